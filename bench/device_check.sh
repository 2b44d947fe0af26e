#!/usr/bin/env bash
# Device check: everything that needs a GPU, in one run of under 8 minutes.
#
#   bash bench/device_check.sh
#
# 1. the CUDA tests (pytest -m gpu);
# 2. the nested leave-one-run-out encoding benchmark on torch_cuda against himalaya's
#    torch_cuda backend (bench/encoding_scale.py, same folds and alphas, all outer folds timed);
# 3. feature extraction with a full-size, randomly initialised video transformer (VideoMAE
#    ViT-L config: 24 layers, 1024 wide, 16 frames of 224 px; built from a config, nothing
#    downloaded) under bf16 autocast, batch size from free GPU memory with halving on OOM,
#    printing decode throughput (PyAV, frames/s) against model throughput (frames/s).
#
# Where no CUDA device exists it prints "no GPU: skipped" and exits 0.
# Exit status: 0 when every step passed, 1 otherwise. Each step has its own time limit.
set -u
cd "$(dirname "$0")/.." || exit 1
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
export HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "no GPU: skipped (torch.cuda.is_available() is False on this machine)"
    exit 0
fi

start=$(date +%s)
status=0
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv

echo "== 1. CUDA tests (pytest -m gpu)"
timeout 150 "$PY" -m pytest -q -m gpu tests/engine -p no:cacheprovider || status=1

echo "== 2. encoding: Gram path on torch_cuda vs himalaya RidgeCV on torch_cuda (nested LORO)"
timeout 180 "$PY" bench/encoding_scale.py --backend torch_cuda --himalaya-backend torch_cuda \
    --himalaya-folds all --scale 2 --extrapolate || status=1

echo "== 3. extraction: random full-size video transformer, decode vs model throughput"
timeout 120 "$PY" - <<'EOF' || status=1
import tempfile, time
from pathlib import Path

import av
import numpy as np
import torch
from transformers import VideoMAEConfig, VideoMAEModel

# a 20 s 720p test video (noise + moving bars), written here
tmp = Path(tempfile.mkdtemp())
path = tmp / "clip.mp4"
with av.open(str(path), "w") as out:
    st = out.add_stream("libx264", rate=25)
    st.width, st.height, st.pix_fmt = 1280, 720, "yuv420p"
    rng = np.random.default_rng(0)
    for i in range(500):
        img = (rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8) // 4)
        img[:, (i * 7) % 1280:(i * 7) % 1280 + 40] = 255
        for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(pkt)
    for pkt in st.encode():
        out.mux(pkt)

t0 = time.perf_counter()
frames = []
with av.open(str(path)) as inp:
    inp.streams.video[0].thread_type = "AUTO"
    for fr in inp.decode(video=0):
        frames.append(fr.to_ndarray(format="rgb24", width=224, height=224))
decode_fps = len(frames) / (time.perf_counter() - t0)
print(f"decode (PyAV, 720p -> 224 px rgb): {decode_fps:.0f} frames/s")

cfg = VideoMAEConfig(image_size=224, patch_size=16, num_frames=16, tubelet_size=2, hidden_size=1024,
                     num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
model = VideoMAEModel(cfg).cuda().eval()
n_params = sum(p.numel() for p in model.parameters())
print(f"model: VideoMAE ViT-L config, randomly initialised, {n_params / 1e6:.0f} M parameters")
clip = torch.from_numpy(np.stack(frames[:16])).permute(0, 3, 1, 2).float().div(255)   # 16, 3, 224, 224
free = torch.cuda.mem_get_info()[0]
batch = int(max(1, min(64, free // (1.5e9))))   # ~1.5 GB per 16-frame clip in bf16 with activations
while True:
    try:
        x = clip[None].repeat(batch, 1, 1, 1, 1).cuda(non_blocking=True)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            model(pixel_values=x)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            reps = 5
            for _ in range(reps):
                out = model(pixel_values=x, output_hidden_states=True)
                feats = [h.mean(1).float().cpu() for h in out.hidden_states[::4]]
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / reps
        break
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        if batch == 1:
            raise
        batch //= 2
        print(f"out of memory: batch halved to {batch}")
model_fps = batch * 16 / dt
print(f"model (bf16 autocast, batch {batch} clips of 16 frames, free memory {free / 2**30:.0f} GiB): "
      f"{model_fps:.0f} frames/s, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
print(f"decode / model throughput: {decode_fps / model_fps:.2f} "
      f"({'decoding keeps up' if decode_fps >= model_fps else 'decoding is the bottleneck: use a decode pool'})")
EOF

echo "device check: $(( $(date +%s) - start )) s, status $status"
exit $status
