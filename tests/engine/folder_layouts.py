"""Generated copies of the two data layouts users have, with the real release's names and quirks.

- :func:`make_release`: the Algonauts 2025 release (``algonauts_2025.competitors``): per-subject
  HDF5 runs named ``ses-<n>_task-s01e01a`` (1000 Schaefer parcels), per-subject atlas NIfTI,
  ``.mkv`` stimuli with audio, per-TR transcripts with list-valued cells, a known-missing run
  (sub-05 s04e01a), season 7 stimuli without fMRI (the test set), and one transcript one chunk
  longer than its run (70 chunks vs 69 TRs in the release).
- :func:`make_fmriprep`: a BIDS dataset with an fMRIPrep derivative: fsaverage5 GIFTI pairs,
  the TR in a sidecar at the dataset root only, ``events.tsv`` naming each run's video in
  ``stim_file``, confounds with ``n/a`` in the first row.

Brain data carry a planted signal: the first ``n_planted`` targets follow the video's
luminance (one grey level per TR) delayed by ``delay_trs`` TRs, so a fit can be checked.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

FRIENDS_H5 = "sub-{s}_task-friends_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-s123456_bold.h5"
ATLAS = "sub-{s}_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-dseg_parcellation.nii.gz"
TR_S = 1.49
FPS = 4


def write_video(path: Path, levels, tr_s: float, fps: int = FPS, extra_s: float = 0.3, size: int = 16) -> Path:
    """An .mkv whose frames have grey level ``levels[k]`` during TR ``k``, with a quiet tone as audio."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    duration = len(levels) * tr_s + extra_s
    n_frames = int(duration * fps)
    sr = 8000
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=fps)
        vs.width = vs.height = size
        vs.pix_fmt = "yuv420p"
        aus = out.add_stream("pcm_s16le", rate=sr)
        aus.layout = "mono"
        for i in range(n_frames):
            k = min(int(i / fps / tr_s), len(levels) - 1)
            img = np.full((size, size, 3), int(levels[k]), np.uint8)
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        t = np.arange(int(duration * sr)) / sr
        sig = (3000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)
        for k in range(0, len(sig), 8000):
            frame = av.AudioFrame.from_ndarray(sig[None, k:k + 8000], format="s16", layout="mono")
            frame.sample_rate = sr
            frame.pts = k
            for packet in aus.encode(frame):
                out.mux(packet)
        for packet in aus.encode():
            out.mux(packet)
    return path


def planted_runs(levels, n_targets: int, n_planted: int, delay_trs: int, seed: int, noise: float = 0.3):
    """(n_trs, n_targets) float32: targets < n_planted follow ``levels`` delayed; the rest noise."""
    rng = np.random.default_rng(seed)
    x = (np.asarray(levels, float) - np.mean(levels)) / (np.std(levels) + 1e-9)
    shifted = np.r_[np.zeros(delay_trs), x[:len(x) - delay_trs]]
    data = rng.normal(size=(len(x), n_targets)) * noise
    data[:, :n_planted] += shifted[:, None]
    return (data + 100.0).astype(np.float32)   # scanner-like offset


def transcript_rows(n_rows: int, seed: int) -> str:
    """A transcript TSV with list-valued cells (quotes and commas inside words), some rows empty."""
    rng = np.random.default_rng(seed)
    words = ["I", "don't", "know,", "Ross", "we're", "on", "a", "break!"]
    lines = ["text_per_tr\twords_per_tr\tonsets_per_tr\tdurations_per_tr"]
    for r in range(n_rows):
        if r % 4 == 3:
            lines.append("\t[]\t[]\t[]")
            continue
        w = [words[int(i)] for i in rng.integers(0, len(words), 2)]
        on = [round(r * TR_S + 0.1, 3), round(r * TR_S + 0.7, 3)]
        lines.append(f"{' '.join(w)}\t{w!r}\t{on!r}\t[0.3, 0.4]")
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=1)
def schaefer_like_labels() -> np.ndarray:
    """Labels on the 2 mm MNI grid (97 x 115 x 97): left hemisphere 1..500 by y, right 501..1000."""
    x = -96 + 2 * np.arange(97)
    y = -132 + 2 * np.arange(115)
    y_bin = np.clip(((y + 110) / 180 * 500).astype(int), 0, 499)            # 115
    lab = np.where(x[:, None, None] < 0, 1 + y_bin[None, :, None], 501 + y_bin[None, :, None])
    return np.broadcast_to(lab, (97, 115, 97)).astype(np.int16)


def schaefer_like_volume():
    affine = np.array([[2, 0, 0, -96], [0, 2, 0, -132], [0, 0, 2, -78], [0, 0, 0, 1]], float)
    return nib.Nifti1Image(schaefer_like_labels(), affine)


def make_release(root: Path, n_trs: int = 24, n_planted: int = 40, delay_trs: int = 2, media: bool = True,
                 atlas: bool = True) -> dict:
    """The Algonauts 2025 layout under ``root``; returns the truth (levels, runs, planted targets)."""
    parts = {"s01e01a": n_trs, "s01e01b": n_trs + 2, "s04e01a": n_trs + 1}
    rng = np.random.default_rng(7)
    levels = {p: rng.integers(20, 235, n) for p, n in parts.items()}
    truth = {"levels": levels, "runs": {}, "n_planted": n_planted, "delay_trs": delay_trs, "n_trs": parts}
    vol = schaefer_like_volume() if atlas else None
    for sub, missing in (("01", None), ("05", "s04e01a")):          # sub-05 s04e01a: absent from the release
        func = root / "fmri" / f"sub-{sub}" / "func"
        func.mkdir(parents=True)
        with h5py.File(func / FRIENDS_H5.format(s=sub), "w") as f:
            for k, (part, n) in enumerate(parts.items()):
                if part == missing:
                    continue
                key = f"ses-{k + 1:03d}_task-{part}"
                f[key] = planted_runs(levels[part], 1000, n_planted, delay_trs, seed=int(sub) * 100 + k)
                truth["runs"][(f"sub-{sub}", key)] = np.asarray(f[key])
        if vol is not None:
            (root / "fmri" / f"sub-{sub}" / "atlas").mkdir()
            nib.save(vol, root / "fmri" / f"sub-{sub}" / "atlas" / ATLAS.format(s=sub))
    for part, n in list(parts.items()) + [("s07e01a", n_trs)]:       # season 7: the test set, no fMRI
        season = int(part[1:3])
        tdir = root / "stimuli" / "transcripts" / "friends" / f"s{season}"
        tdir.mkdir(parents=True, exist_ok=True)
        extra = 1 if part == "s01e01a" else 0                       # one chunk more than the run's TRs
        (tdir / f"friends_{part}.tsv").write_text(transcript_rows(n + extra, seed=season))
        if media:
            lv = levels.get(part, np.full(n, 128))
            write_video(root / "stimuli" / "movies" / "friends" / f"s{season}" / f"friends_{part}.mkv", lv, TR_S,
                        extra_s=0.3 + TR_S * extra)                 # and a video one TR longer too
    return truth


def make_fmriprep(root: Path, n_trs: int = 30, tr_s: float = 2.0, n_planted: int = 300, delay_trs: int = 2,
                  media: bool = True, sidecar: bool = True, nuisance: float = 0.0) -> dict:
    """A BIDS dataset at ``root`` with ``derivatives/fmriprep``; returns the truth and the derivative path.

    ``nuisance``: the planted targets also carry ``nuisance`` x the (z-scored) ``trans_x`` motion
    confound, which confound regression removes.
    """
    rng = np.random.default_rng(3)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "friends-mini", "BIDSVersion": "1.8.0"}))
    deriv = root / "derivatives" / "fmriprep"
    deriv.mkdir(parents=True)
    (deriv / "dataset_description.json").write_text(json.dumps(
        {"Name": "fMRIPrep", "BIDSVersion": "1.8.0", "DatasetType": "derivative"}))
    if sidecar:   # at the derivative's root only: BIDS inheritance
        (deriv / "task-friends_bold.json").write_text(json.dumps({"RepetitionTime": tr_s, "TaskName": "friends"}))
    episodes = {1: "friends_s01e02a", 2: "friends_s01e02b"}
    truth = {"levels": {}, "runs": {}, "tr_s": tr_s, "deriv": deriv, "episodes": episodes, "n_planted": n_planted,
             "confounds": {}}
    for run, ep in episodes.items():
        levels = rng.integers(20, 235, n_trs)
        truth["levels"][ep] = levels
        raw_func = root / "sub-01" / "func"
        raw_func.mkdir(parents=True, exist_ok=True)
        events = raw_func / f"sub-01_task-friends_run-{run}_events.tsv"
        events.write_text("onset\tduration\ttrial_type\tstim_file\n"
                          f"0.0\t{n_trs * tr_s}\tmovie\tfriends/{ep}.mkv\n")
        if media:
            write_video(root / "stimuli" / "friends" / f"{ep}.mkv", levels, tr_s)
        func = deriv / "sub-01" / "func"
        func.mkdir(parents=True, exist_ok=True)
        conf = rng.normal(size=(n_trs, 8)) * 0.1
        data = planted_runs(levels, 20484, n_planted, delay_trs, seed=run)
        data[:, :n_planted] += nuisance * ((conf[:, 0] - conf[:, 0].mean()) / conf[:, 0].std())[:, None]
        truth["runs"][run] = data
        for h, sl in (("L", slice(0, 10242)), ("R", slice(10242, 20484))):
            arrays = [nib.gifti.GiftiDataArray(row[sl]) for row in data]
            nib.save(nib.GiftiImage(darrays=arrays),
                     func / f"sub-01_task-friends_run-{run}_space-fsaverage5_hemi-{h}_bold.func.gii")
        cols = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "white_matter", "csf"]
        lines = ["\t".join(cols + [f"{c}_derivative1" for c in cols[:6]])]
        for t in range(n_trs):
            deriv_cells = ["n/a"] * 6 if t == 0 else [f"{conf[t, j] - conf[t - 1, j]:.6f}" for j in range(6)]
            lines.append("\t".join([f"{v:.6f}" for v in conf[t]] + deriv_cells))
        (func / f"sub-01_task-friends_run-{run}_desc-confounds_timeseries.tsv").write_text("\n".join(lines) + "\n")
        truth["confounds"][run] = np.round(conf, 6)
    return truth
