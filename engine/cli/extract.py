"""``alignscope extract VIDEO``: per-TR model features of an episode, saved to HDF5.

Examples::

    python main.py extract episode.mkv --words words.tsv --model minilm --tr 1.49 --out minilm.h5
    python main.py extract episode.mkv --model /models/clip-vit-base-patch32 --layers 0.5,1.0 --out clip.h5
    python main.py extract episode.mkv --model clip-vit-b32-joint --ablate vision --out clip_novision.h5
    python main.py extract --list-models

The output holds one dataset per layer, ``/features/<layer>`` (n_trs, n_features) float32,
with the spec, ablation and cache key as JSON in the ``meta`` attribute; it is written
atomically. Features are also cached (``--cache-dir``; ``$ALIGNSCOPE_CACHE``), so a
cancelled run (Ctrl-C) resumes where it stopped. Imports stay inside functions.
"""

from __future__ import annotations

ABLATIONS = ("none", "vision", "audio", "text")


def add_arguments(parser) -> None:
    parser.add_argument("video", nargs="?", help="episode video (its audio track is used unless --audio is given)")
    parser.add_argument("--words", metavar="FILE", help="word timings (TSV/CSV with onset, duration, word; "
                                                        "Algonauts transcript TSV; SRT/VTT/TextGrid)")
    parser.add_argument("--audio", metavar="FILE", help="separate audio file on the video's clock")
    parser.add_argument("--model", default="minilm",
                        help="registry name (see --list-models), local model folder, or Hub id in the offline cache "
                             "(default: minilm, which ships with the installation)")
    parser.add_argument("--family", default=None, help="extractor family when it cannot be read from config.json")
    parser.add_argument("--layers", default=None,
                        help="comma-separated hidden-state indices (0 = embeddings, -1 = last) or relative "
                             "depths (0.5,0.75,1.0); names for lowlevel (luminance,motion,...)")
    parser.add_argument("--pooling", choices=("mean", "cls", "last"), default=None)
    parser.add_argument("--window", type=float, default=None, metavar="S",
                        help="stimulus window ending at each TR's end, seconds")
    parser.add_argument("--frames", type=int, default=None, help="frames sampled per window (vision)")
    parser.add_argument("--context", type=int, default=None, metavar="WORDS", help="language context length in words")
    parser.add_argument("--tr", type=float, default=1.49, metavar="S", help="repetition time (default 1.49 s)")
    parser.add_argument("--n-trs", type=int, default=None, help="number of TRs (default: as many as the video holds)")
    parser.add_argument("--onset", type=float, default=0.0, metavar="S", help="episode time of TR 0's start")
    parser.add_argument("--out", metavar="H5", help="output HDF5 file")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--dtype", choices=("auto", "float32", "float16", "bfloat16"), default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="TRs per batch (default: from free GPU memory)")
    parser.add_argument("--ablate", choices=ABLATIONS, default="none",
                        help="run with one input removed: blank frames, silent audio, or no words")
    parser.add_argument("--cache-dir", default=None, help="feature cache folder")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run code shipped with the checkpoint (only for sources you trust)")
    parser.add_argument("--attention-out", metavar="H5", default=None,
                        help="also write attention maps and rollout for the overlay (image and language models)")
    parser.add_argument("--attention-mb", type=float, default=32.0, metavar="MB",
                        help="size budget of the attention file; TRs are subsampled to fit (default 32)")
    parser.add_argument("--list-models", action="store_true", help="list the registry and exit")


def parse_layers(text):
    """``"0.5,1.0,-1,3"`` -> (0.5, 1.0, -1, 3); names stay strings."""
    if text is None:
        return None
    out = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            out.append(int(item))
        except ValueError:
            try:
                out.append(float(item))
            except ValueError:
                out.append(item)
    return tuple(out)


def run(args) -> int:
    from pathlib import Path

    from ..errors import ConfigError

    if args.list_models:
        from ..features.registry import list_specs

        for name, spec in list_specs().items():
            print(f"{name:22s} {spec.modality:10s} {spec.family:11s} {spec.model}")
        return 0
    if not args.video:
        raise ConfigError("extract: expected an episode video, found none (or use --list-models)")
    if not args.out:
        raise ConfigError("extract: expected --out FILE.h5, found none")
    from ..features.base import EpisodeInputs
    from ..features.extract import extract_features_job
    from ..jobs import run_sync

    video = Path(args.video)
    words = None
    if args.words:
        from ..io.text import read_words

        words = read_words(args.words)
    n_trs = args.n_trs
    if n_trs is None:
        from ..io.video import VideoReader

        with VideoReader(video) as reader:
            n_trs = int((reader.duration_s - args.onset) // args.tr)
    episode = EpisodeInputs(n_trs=n_trs, tr_s=args.tr, video_path=video, audio_path=args.audio, words=words,
                            onset_s=args.onset)
    overrides = dict(layers=parse_layers(args.layers), pooling=args.pooling, window_s=args.window,
                     frames_per_window=args.frames, context_words=args.context, dtype=args.dtype,
                     family=args.family, trust_remote_code=True if args.trust_remote_code else None)
    job = extract_features_job(episode, args.model, ablate=args.ablate, cache_dir=args.cache_dir,
                               use_cache=not args.no_cache, device=args.device, batch_size=args.batch_size,
                               **overrides)
    spaces = run_sync(job, progress_bar=True, name="extract")
    path = save_feature_spaces(spaces, Path(args.out))
    for name, fs in spaces.items():
        print(f"{fs.name}: {fs.n_trs} TRs x {fs.n_features} features")
    print(f"wrote {path}")
    if args.attention_out:
        from ..features.attention import save_attention
        from ..features.extract import extract_attention_job

        maps = run_sync(extract_attention_job(episode, args.model, max_mb=args.attention_mb, device=args.device,
                                              ablate=args.ablate, **{k: v for k, v in overrides.items()
                                                                     if v is not None}),
                        progress_bar=True, name="attention")
        apath = save_attention(maps, Path(args.attention_out))
        print(f"wrote {apath} ({len(maps.tr_indices)} TRs, {maps.nbytes / 2 ** 20:.2f} MB of maps)")
    return 0


def save_feature_spaces(spaces, path):
    """Write ``{layer: FeatureSpace}`` to one HDF5 file atomically."""
    import json

    import h5py

    from engine.atomic import atomic_path

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            meta = None
            for layer, fs in spaces.items():
                d = f.create_dataset(f"features/{layer.replace('/', '%2F')}", data=fs.data)
                d.attrs["name"] = fs.name
                meta = fs.meta
            f.attrs["tr_s"] = next(iter(spaces.values())).tr_s if spaces else 0.0
            f.attrs["model_id"] = next(iter(spaces.values())).model_id if spaces else ""
            f.attrs["meta"] = json.dumps(meta or {}, default=str)
    return path
