"""``python main.py extract``: the same features as the engine call, written to HDF5; GPU path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from engine.features.base import EpisodeInputs  # noqa: E402
from engine.features.extract import extract_features  # noqa: E402
from tests.engine import test_features_support as S  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_extract_help_does_not_import_torch():
    code = ("import sys, main; p = main.build_parser(); "
            "print(any(m == 'torch' or m.startswith('transformers') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_engine_feature_modules_import_without_torch():
    mods = ["base", "registry", "extract", "cache", "attention", "hf", "vision", "language", "audio",
            "multimodal", "plugins"]
    code = ("import sys\n" + "".join(f"import engine.features.{m}\n" for m in mods) + "import engine.cli.extract\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'PySide6', 'vtk')]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_lists_the_registry(capsys):
    import main

    assert main.main(["extract", "--list-models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert {"minilm", "lowlevel", "clip-vit-b32", "vjepa2-vitl", "whisper-base", "tvlt-base"} <= set(names)


def test_cli_extract_writes_the_engine_features(tmp_path):
    import h5py

    import main

    video = S.make_video(tmp_path / "v.mp4", seconds=4.3, size=(32, 32))
    words = S.make_words(seconds=4.0, rate_hz=3.0)
    words_path = tmp_path / "words.tsv"
    words.to_csv(words_path, sep="\t", index=False)
    bert = S.tiny_bert(tmp_path / "bert")
    out = tmp_path / "feat.h5"
    rc = main.main(["extract", str(video), "--words", str(words_path), "--model", str(bert), "--layers", "1,-1",
                    "--tr", "1.0", "--window", "1.0", "--context", "6", "--out", str(out), "--device", "cpu",
                    "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    ep = EpisodeInputs(n_trs=4, tr_s=1.0, video_path=video, words=words)  # n-trs from the 4.3 s video
    ref = extract_features(ep, str(bert), layers=(1, -1), window_s=1.0, context_words=6, device="cpu",
                           use_cache=False)
    with h5py.File(out, "r") as f:
        assert sorted(f["features"]) == ["layer01", "layer02"]
        for name in ("layer01", "layer02"):
            np.testing.assert_array_equal(f["features"][name][...], ref[name].data)
        meta = json.loads(f.attrs["meta"])
        assert meta["ablate"] == "none" and meta["spec"]["context_words"] == 6
        assert float(f.attrs["tr_s"]) == 1.0
    # Attention maps for the overlay, from the same command.
    from engine.features.attention import load_attention

    rc = main.main(["extract", str(video), "--words", str(words_path), "--model", str(bert), "--tr", "1.0",
                    "--window", "1.0", "--out", str(out), "--device", "cpu", "--cache-dir", str(tmp_path / "cache"),
                    "--attention-out", str(tmp_path / "att.h5")])
    assert rc == 0
    att = load_attention(tmp_path / "att.h5")
    assert att.kind == "tokens" and list(att.tr_indices) == [0, 1, 2, 3] and att.maps.shape[1:3] == (2, 2)
    # A user mistake is a message and exit status 2, not a traceback.
    rc = main.main(["extract", str(video), "--model", str(tmp_path / "missing"), "--out", str(out)])
    assert rc == 2


@pytest.mark.gpu
def test_gpu_half_precision_close_to_cpu(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    video = S.make_video(tmp_path / "v.mp4", seconds=4.3, size=(32, 32), audio=False)
    vit = S.tiny_vit(tmp_path / "vit")
    ep = EpisodeInputs(n_trs=4, tr_s=1.0, video_path=video)
    cpu = extract_features(ep, str(vit), device="cpu", use_cache=False)["layer02"].data
    gpu = extract_features(ep, str(vit), device="cuda", use_cache=False)  # auto dtype: bf16/fp16
    assert gpu["layer02"].data.dtype == np.float32
    r = np.corrcoef(cpu.ravel(), gpu["layer02"].data.ravel())[0, 1]
    assert r > 0.99


def test_episode_inputs_from_a_project(tmp_path):
    from engine.features.extract import episode_inputs
    from engine.project import Episode, Project, RunRef

    S.make_video(tmp_path / "ep1.mp4", seconds=6.0, size=(32, 32), audio=False)
    S.make_words(seconds=6.0).to_csv(tmp_path / "ep1_words.tsv", sep="\t", index=False)
    project = Project(name="t", episodes=[Episode(name="ep1", video="ep1.mp4", words="ep1_words.tsv")],
                      runs=[RunRef(name="r1", path="r1.npy", episode="ep1", tr_s=1.5, onset_s=1.0)])
    project.save(tmp_path / "t.alignscope.json")
    project = Project.load(tmp_path / "t.alignscope.json")
    ep = episode_inputs(project, "ep1")
    assert ep.tr_s == 1.5 and ep.onset_s == 1.0 and ep.n_trs == 3  # (6.0 - 1.0) // 1.5
    assert ep.video_path == tmp_path / "ep1.mp4" and len(ep.words) == len(S.make_words(seconds=6.0))
