"""``alignscope extract STIMULUS...``: per-TR model features of an episode, saved to HDF5.

Examples::

    python main.py extract episode.mkv --words words.tsv --model minilm --tr 1.49 --out minilm.h5
    python main.py extract story.wav story.TextGrid --model lowlevel --tr 2.0 --out story_lowlevel.h5
    python main.py extract story.TextGrid --model minilm --tr 2.0 --out story_minilm.h5
    python main.py extract story.wav task-story_events.tsv --model lowlevel --tr 2.0 --out story.h5
    python main.py extract --project study.alignscope.json --episode s01e01a --model clip-vit-b32 --out clip.h5
    python main.py extract episode.mkv --model clip-vit-b32-joint --ablate vision --tr 1.49 --out clip_novision.h5
    python main.py extract --list-models

Stimuli are recognised by their name and content: a video, an audio file, word timings
(TextGrid, SRT, VTT, TSV/CSV with onset, duration, word) and events tables (BIDS-like
``onset``/``duration``/``trial_type`` TSV or FSL three-column TXT), which become boxcar
regressors (layer ``events``, one column per trial type). No video is needed. The TR is
``--tr`` or that of the runs a project pairs with ``--episode``; it is printed and stored.

The output holds one dataset per layer, ``/features/<layer>`` (n_trs, n_features) float32,
with ``tr_s``, the model and the spec as attributes; it is written atomically. Features are
also cached (``--cache-dir``; ``$ALIGNSCOPE_CACHE``), so a cancelled run resumes.
"""

from __future__ import annotations

ABLATIONS = ("none", "vision", "audio", "text")


def add_arguments(parser) -> None:
    parser.add_argument("stimuli", nargs="*", metavar="STIMULUS",
                        help="stimulus files: a video, an audio file, word timings, an events table (any of them)")
    parser.add_argument("--words", metavar="FILE", help="word timings (TSV/CSV with onset, duration, word; "
                                                        "Algonauts transcript TSV; SRT/VTT/TextGrid)")
    parser.add_argument("--audio", metavar="FILE", help="audio file (on the video's clock when there is a video)")
    parser.add_argument("--events", metavar="FILE", help="events table (BIDS TSV or FSL 3-column TXT)")
    parser.add_argument("--project", metavar="PATH", help="a project (or data folder): stimuli and TR of --episode")
    parser.add_argument("--episode", metavar="NAME", help="with --project: the episode to extract")
    parser.add_argument("--model", default=None,
                        help="registry name (see --list-models), local model folder, Hub id in the offline cache, "
                             "or lowlevel (default: minilm for word timings alone, else lowlevel)")
    parser.add_argument("--family", default=None, help="extractor family when it cannot be read from config.json")
    parser.add_argument("--layers", default=None,
                        help="comma-separated hidden-state indices (0 = embeddings, -1 = last) or relative "
                             "depths (0.5,0.75,1.0); names for lowlevel (luminance,motion,...)")
    parser.add_argument("--pooling", choices=("mean", "cls", "last"), default=None)
    parser.add_argument("--window", type=float, default=None, metavar="S",
                        help="stimulus window ending at each TR's end, seconds")
    parser.add_argument("--frames", type=int, default=None, help="frames sampled per window (vision)")
    parser.add_argument("--context", type=int, default=None, metavar="WORDS", help="language context length in words")
    parser.add_argument("--tr", type=float, default=None, metavar="S",
                        help="repetition time in seconds (required unless --project pairs the episode with runs)")
    parser.add_argument("--n-trs", type=int, default=None, 
                        help="number of TRs (default: as many as the stimulus holds)")
    parser.add_argument("--onset", type=float, default=None, metavar="S", help="stimulus time of TR 0's start "
                        "(default 0, or the paired runs' onset)")
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or summary line")
    parser.add_argument("--list-models", action="store_true", help="list the models found (registry, HF cache) "
                        "and exit")
    from .output import add_json_argument

    add_json_argument(parser)


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


def _stimulus_files(args) -> dict:
    """{"video", "audio", "words", "events"} -> path, from the positional files and the options."""
    from ..pipeline.features import stimulus_files

    named = {k: getattr(args, k) for k in ("words", "audio", "events") if getattr(args, k)}
    return stimulus_files(args.stimuli or [], **named)


def _episode(args):
    """(EpisodeInputs, events path or None, where the TR came from)."""
    from ..errors import ConfigError
    from ..pipeline.features import project_episode, stimulus_episode

    if args.project:
        if not args.episode:
            raise ConfigError("extract --project: expected --episode NAME, found none")
        return project_episode(args.project, args.episode, tr_s=args.tr, n_trs=args.n_trs, onset_s=args.onset)
    files = _stimulus_files(args)
    if not files:
        raise ConfigError("extract: expected stimulus files (a video, an audio file, word timings or events), "
                          "found none (or use --project PATH --episode NAME, or --list-models)")
    if not args.tr:
        raise ConfigError("extract: expected the TR (--tr SECONDS, or --project PATH --episode NAME whose runs "
                          "give it), found neither; the features' rows are TRs, so it cannot be guessed")
    inputs = stimulus_episode(files, args.tr, n_trs=args.n_trs, onset_s=args.onset or 0.0)
    return inputs, files.get("events"), "--tr"


def _default_model(inputs) -> str:
    if inputs.video_path is None and inputs.audio_path is None and inputs.words is not None:
        return "minilm"
    return "lowlevel"


def run(args) -> int:
    from .output import json_output

    with json_output(args) as summary:
        return _run(args, summary)


def _run(args, summary) -> int:
    from pathlib import Path

    from ..errors import ConfigError

    if args.list_models:
        from ..pipeline.features import list_models

        summary["models"] = []
        for m in list_models():
            state = "ok" if m.available else "missing"
            print(f"{m.name:34s} {m.modality:10s} {m.family:11s} {m.source:9s} {state:7s} {m.model}")
            summary["models"].append({"name": m.name, "modality": m.modality, "family": m.family,
                                      "source": m.source, "available": bool(m.available), "model": str(m.model)})
        return 0
    if not args.out:
        raise ConfigError("extract: expected --out FILE.h5, found none")
    from ..pipeline.features import episode_features_job, events_regressors
    from ..pipeline.results import save_feature_spaces
    from .common import run_job

    inputs, events, tr_from = _episode(args)
    only_events = (events is not None and inputs.video_path is None and inputs.audio_path is None
                   and inputs.words is None)
    model = args.model or (None if only_events else _default_model(inputs))
    print(f"TR: {inputs.tr_s:g} s (from {tr_from}); {inputs.n_trs} TRs from {inputs.onset_s:g} s")
    spaces = {}
    if model is not None:
        job = episode_features_job(inputs, model, layers=parse_layers(args.layers), pooling=args.pooling,
                                   window_s=args.window, context_words=args.context, frames_per_window=args.frames,
                                   device=args.device, dtype=args.dtype, ablate=args.ablate,
                                   batch_size=args.batch_size, cache_dir=args.cache_dir, use_cache=not args.no_cache,
                                   family=args.family, trust_remote_code=args.trust_remote_code)
        spaces = run_job(job, "extract", args.no_progress)
    extra = {}
    if events is not None:
        regressors, types = events_regressors(events, inputs.n_trs, inputs.tr_s, inputs.onset_s)
        extra["events"] = (regressors, types, inputs.tr_s)
    path = save_feature_spaces(spaces, Path(args.out), extra_layers=extra)
    for name, fs in spaces.items():
        print(f"{fs.name}: {fs.n_trs} TRs x {fs.n_features} features")
    if extra:
        print(f"events: {inputs.n_trs} TRs x {len(extra['events'][1])} regressors ({', '.join(extra['events'][1])})")
    print(f"wrote {path}")
    summary.update(out=str(path), model=model, tr_s=float(inputs.tr_s), tr_from=tr_from, n_trs=int(inputs.n_trs),
                   onset_s=float(inputs.onset_s),
                   spaces={fs.name: {"n_trs": int(fs.n_trs), "n_features": int(fs.n_features)}
                           for fs in spaces.values()},
                   events=list(extra["events"][1]) if extra else None)
    if args.attention_out:
        if model is None or model == "lowlevel":
            raise ConfigError("--attention-out: expected an image or language model, found "
                              f"{model or 'no model'}")
        from ..features.attention import save_attention
        from ..features.extract import extract_attention_job

        overrides = dict(layers=parse_layers(args.layers), pooling=args.pooling, window_s=args.window,
                         frames_per_window=args.frames, context_words=args.context, dtype=args.dtype,
                         family=args.family, trust_remote_code=True if args.trust_remote_code else None)
        maps = run_job(extract_attention_job(inputs, model, max_mb=args.attention_mb, device=args.device,
                                             ablate=args.ablate, **{k: v for k, v in overrides.items()
                                                                    if v is not None}),
                       "attention", args.no_progress)
        apath = save_attention(maps, Path(args.attention_out))
        print(f"wrote {apath} ({len(maps.tr_indices)} TRs, {maps.nbytes / 2 ** 20:.2f} MB of maps)")
        summary["attention_out"] = str(apath)
    return 0


def save_feature_spaces(spaces, path):
    """Kept importable: :func:`engine.pipeline.results.save_feature_spaces`."""
    from ..pipeline.results import save_feature_spaces as _save

    return _save(spaces, path)
