"""engine.qc on generated data with planted faults: each fault is flagged, clean data pass every check.

The study: a 75 s episode (10 fps video whose brightness follows a random walk, a tone whose
loudness follows another, words in bursts) and runs of 50 TRs (TR 1.5 s) in scanner units:
30 "Vis" targets follow the luminance, 30 "Aud" the sound level, 30 "Lang" the word rate
(each through a double-gamma HRF written here, not the engine's), the rest noise.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine.project import Episode, Project, RunRef
from engine.qc import brain, checks, episode, reliability, sync
from engine.qc.run import qc_files, qc_project

TR_S = 1.5
N_TRS = 50
FPS = 10
SR = 16000
DURATION_S = N_TRS * TR_S
N_TARGETS = 150
REGIONS = {"Vis": range(0, 30), "Aud": range(30, 60), "Lang": range(60, 90)}


def _hrf(tr_s):
    t = np.arange(0, 30, tr_s)
    g = lambda a: t ** (a - 1) * np.exp(-t) / math.gamma(a)  # noqa: E731
    h = g(6.0) - g(16.0) / 6.0
    return h / h.sum()


def _smooth(rng, n, width):
    x = np.convolve(rng.standard_normal(n + 4 * width), np.hanning(2 * width + 1), "same")[2 * width:2 * width + n]
    return (x - x.min()) / (np.ptp(x) + 1e-12)


def _write_video(path, luminance_per_frame, loudness_per_frame, gap=None, audio_s=None):
    """H.264 + AAC; ``gap=(first, n)`` leaves n frames out after frame ``first`` (a time-stamp jump);
    ``audio_s`` makes the audio track that long (default: as long as the video)."""
    import av

    n = len(luminance_per_frame)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.codec_context.time_base = __import__("fractions").Fraction(1, FPS)
        as_ = out.add_stream("aac", rate=SR)
        as_.layout = "mono"
        for i in range(n):
            if gap is not None and gap[0] < i <= gap[0] + gap[1]:
                continue
            img = np.full((48, 64, 3), int(20 + 215 * luminance_per_frame[i]), np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = __import__("fractions").Fraction(1, FPS)
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        t = np.arange(int((n / FPS if audio_s is None else audio_s) * SR)) / SR
        env = np.resize(np.repeat(loudness_per_frame, SR // FPS), t.size)
        wave = (0.05 + 0.6 * env) * np.sin(2 * np.pi * 440 * t)
        samples = wave.astype(np.float32)
        block = 1024
        for k in range(0, samples.size, block):
            chunk = samples[k:k + block]
            af = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            af.sample_rate = SR
            af.pts = k
            for p in as_.encode(af):
                out.mux(p)
        for p in as_.encode():
            out.mux(p)


class Study:
    """Files and ground truth of the generated study."""


def make_study(root: Path, seed: int = 0, n_subjects: int = 2, gap=None) -> Study:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    n_frames = int(DURATION_S * FPS)
    lum = _smooth(rng, n_frames, 25)
    loud = _smooth(rng, n_frames, 20)
    video = root / "episode.mp4"
    _write_video(video, lum, loud, gap=gap)
    # words in bursts
    words, t = [], 1.0
    while t < DURATION_S - 3:
        seg_end = min(t + rng.uniform(3, 8), DURATION_S - 2)
        rate = rng.uniform(1, 4)
        while t < seg_end:
            words.append((t, 0.8 / rate, "word"))
            t += 1.0 / rate
        t = seg_end + rng.uniform(2, 7)
    wpath = root / "words.tsv"
    wpath.write_text("onset\tduration\tword\n" + "".join(f"{a:.3f}\t{b:.3f}\t{w}\n" for a, b, w in words))
    # per-TR drivers from the generator's own parameters
    fr = lambda x: x.reshape(N_TRS, -1).mean(axis=1)  # noqa: E731
    rate = np.bincount((np.array([w[0] for w in words]) // TR_S).astype(int), minlength=N_TRS)[:N_TRS]
    drivers = {"Vis": fr(lum), "Aud": fr(loud), "Lang": rate.astype(float)}
    h = _hrf(TR_S)
    bold = {k: np.convolve(v - v.mean(), h)[:N_TRS] for k, v in drivers.items()}
    bold = {k: (v - v.mean()) / v.std() for k, v in bold.items()}
    s = Study()
    s.root, s.video, s.words, s.bold, s.runs = root, video, wpath, bold, []
    for subj in range(n_subjects):
        noise = rng.standard_normal((N_TRS, N_TARGETS))
        signal = np.zeros((N_TRS, N_TARGETS))
        for name, idx in REGIONS.items():
            signal[:, list(idx)] = 1.5 * bold[name][:, None]
        baseline = rng.uniform(800, 1200, N_TARGETS)
        data = (baseline + 10.0 * (signal + noise)).astype(np.float32)    # ~1 % signal change, tSNR ~ 50-100
        s.runs.append(data)
    s.names = [f"7Networks_LH_{g}_{i}" for g, idx in
               (("Vis", REGIONS["Vis"]), ("SomMot", REGIONS["Aud"]), ("Default", REGIONS["Lang"])) for i in idx]
    s.names += [f"7Networks_RH_Cont_{i}" for i in range(N_TARGETS - len(s.names))]
    return s


def write_table(path: Path, data: np.ndarray, names) -> Path:
    np.savetxt(path, data, delimiter="\t", fmt="%.4f", header="\t".join(names), comments="")
    return path


def write_confounds(path: Path, n_trs: int, stretch=None, seed: int = 0) -> np.ndarray:
    """fMRIPrep-style confounds TSV (n/a in the first row of the derived columns); returns the
    Power FD computed here, independently of the engine."""
    rng = np.random.default_rng(seed)
    trans = np.cumsum(rng.normal(0, 0.02, (n_trs, 3)), axis=0)
    rot = np.cumsum(rng.normal(0, 0.0002, (n_trs, 3)), axis=0)
    if stretch is not None:
        a, b = stretch
        jitter = np.zeros((n_trs, 3))
        jitter[a:b + 1:2] = 0.8        # the head jerks by 0.8 mm every other volume
        trans = trans + jitter
    params = np.hstack([trans, rot])
    fd = np.r_[np.nan, np.abs(np.diff(trans, axis=0)).sum(1) + 50 * np.abs(np.diff(rot, axis=0)).sum(1)]
    cols = ["global_signal", "trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "framewise_displacement",
            "trans_x_derivative1"]
    with open(path, "w") as fh:
        fh.write("\t".join(cols) + "\n")
        for t in range(n_trs):
            row = [f"{rng.normal():.5f}"] + [f"{v:.6f}" for v in params[t]]
            row += ["n/a" if t == 0 else f"{fd[t]:.6f}", "n/a" if t == 0 else f"{trans[t, 0] - trans[t - 1, 0]:.6f}"]
            fh.write("\t".join(row) + "\n")
    return np.nan_to_num(fd)


_STUDIES = {}


def shared_study(tmp_path_factory, seed: int = 0) -> Study:
    """The generated study, written once per test session (the QC test files share it)."""
    if seed not in _STUDIES:
        _STUDIES[seed] = make_study(tmp_path_factory.getbasetemp() / f"qc_study_{seed}", seed=seed)
    return _STUDIES[seed]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return shared_study(tmp_path_factory)


def _levels(report_checks, subject=None):
    return {(c.subject, c.name): c.level for c in report_checks if subject is None or c.subject == subject}


def _project(study, tmp, runs, confounds=None, preprocessing=None, words=True):
    """A project with the given {name: data} runs (written as TSV tables) of one episode."""
    tmp.mkdir(parents=True, exist_ok=True)
    p = Project(name="qc", preprocessing=preprocessing or {})
    p.episodes.append(Episode("episode", video=str(study.video), words=str(study.words) if words else None))
    for k, (name, data) in enumerate(runs.items()):
        path = write_table(tmp / f"{name}.tsv", data, study.names)
        subj = name.split("_")[0]
        p.runs.append(RunRef(name, str(path), "episode", subject=subj, space="parcels", tr_s=TR_S,
                             confounds=str(confounds[name]) if confounds and name in confounds else None))
    p.root = tmp
    return p


# ---- clean data: no false alarms -----------------------------------------------------------
def test_clean_study_passes_every_check(study, tmp_path):
    conf = {"sub-01_run-1": tmp_path / "c1.tsv", "sub-02_run-1": tmp_path / "c2.tsv"}
    write_confounds(conf["sub-01_run-1"], N_TRS, seed=1)
    write_confounds(conf["sub-02_run-1"], N_TRS, seed=2)
    p = _project(study, tmp_path / "p", {"sub-01_run-1": study.runs[0], "sub-02_run-1": study.runs[1]}, conf)
    rep = qc_project(p)
    names = {c.name for c in rep.checks}
    for expected in ("dead_targets", "duplicated_trs", "run_length", "tsnr", "units_drift", "global_signal", "motion",
                     "frame_times", "audio_video", "silence", "words_timing", "sync", "reliability"):
        assert expected in names, expected
    bad = [(c.subject, c.name, c.level, c.message) for c in rep.checks if c.level != "pass"]
    assert bad == []
    assert not rep.failed
    # every run is in sync at lag 0 and the planted regions are reliable
    for c in rep.find("sync"):
        assert c.details["significant"] and abs(c.details["best_lag_trs"]) < 0.6, c.message
    rel = rep.find("reliability")[0]
    ceiling = rel.data["ceiling"]
    driven = np.r_[0:90]
    assert np.median(ceiling[driven]) > 0.3
    assert rel.data["near_zero"][90:].mean() > 0.5            # noise targets marked
    assert not rel.data["near_zero"][driven].any()


# ---- planted faults ------------------------------------------------------------------------
def test_run_shifted_by_three_trs_is_flagged_with_its_offset(study, tmp_path):
    clean = study.runs[0]
    rng = np.random.default_rng(5)
    shifted = np.vstack([clean[3:], clean[-3:] + rng.normal(0, 10, (3, N_TARGETS)).astype(np.float32)])
    p = _project(study, tmp_path, {"sub-01_run-1": clean, "sub-01_run-2": shifted})
    rep = qc_project(p)
    ok, bad = rep.find("sync", "sub-01_run-1")[0], rep.find("sync", "sub-01_run-2")[0]
    assert ok.level == "pass"
    assert bad.level == "fail"
    # volumes missing at the start: the brain leads by 3 TRs
    assert abs(bad.details["best_lag_trs"] - (-3)) <= 1
    assert abs(bad.details["offset_s"] - (-3 * TR_S)) <= TR_S
    assert "onset_s of about +4" in bad.message or "onset_s of about +3" in bad.message \
        or "onset_s of about +5" in bad.message
    assert rep.failed


def test_sync_lag_both_ways_and_null():
    rng = np.random.default_rng(0)
    n, tr = 120, 1.0
    x = np.convolve(rng.standard_normal(n + 40), np.ones(5) / 5, "same")[20:20 + n]
    resp = sync.convolve_hrf(x, tr)[:, 0]
    for shift in (-4, 0, 2, 5):
        y = np.roll(resp, shift)[:, None] + 0.3 * resp.std() * rng.standard_normal((n, 40))
        y[:, 20:] = rng.standard_normal((n, 20))
        est = sync.estimate_lag({"luminance": x}, y, tr)
        assert est["significant"]
        assert abs(est["best_lag"] - shift) < 0.5, (shift, est["best_lag"])
    # pure noise: not significant (no lag trusted)
    est = sync.estimate_lag({"luminance": x}, rng.standard_normal((n, 40)), tr)
    assert not est["significant"]


def test_dropped_frames_are_flagged(tmp_path):
    n = 150                                               # 15 s at 10 fps, 8 frames left out after frame 100
    path = tmp_path / "gap.mp4"
    _write_video(path, np.linspace(0, 1, n), np.ones(n), gap=(100, 8))
    out = episode.check_episode("ep", path)
    c = [c for c in out if c.name == "frame_times"][0]
    assert c.level in ("warn", "fail")
    assert c.details["n_frames"] == n - 8
    assert c.details["n_gaps"] == 1
    assert c.details["n_missing_frames"] == 8
    assert c.details["gaps_at_s"][0] == pytest.approx(10.0, abs=0.05)
    assert c.details["gap_s"][0] == pytest.approx(0.9, abs=0.02)
    # the same video without the gap: no drop
    _write_video(path, np.linspace(0, 1, n), np.ones(n))
    assert [c.level for c in episode.check_episode("ep", path) if c.name == "frame_times"] == ["pass"]


def test_audio_video_length_mismatch(tmp_path):
    n = 100                                               # 10 s of video
    path = tmp_path / "av.mp4"
    _write_video(path, np.linspace(0, 1, n), np.ones(n), audio_s=7.0)
    c = [c for c in episode.check_episode("ep", path) if c.name == "audio_video"][0]
    assert c.level == "fail"
    assert c.details["video_s"] == pytest.approx(10.0, abs=0.01)
    assert c.details["difference_s"] == pytest.approx(-3.0, abs=0.1)
    _write_video(path, np.linspace(0, 1, n), np.ones(n), audio_s=9.0)
    assert [c.level for c in episode.check_episode("ep", path) if c.name == "audio_video"] == ["warn"]


def test_high_motion_stretch_is_flagged(tmp_path, study):
    path = tmp_path / "sub-01_desc-confounds_timeseries.tsv"
    fd_expected = write_confounds(path, N_TRS, stretch=(20, 27))
    m = brain.read_motion(path)
    np.testing.assert_allclose(m["fd"], fd_expected, atol=1e-4)          # Power FD from the parameters
    np.testing.assert_allclose(m["fd"], m["fmriprep_fd"], atol=1e-4)     # = fMRIPrep's column (n/a -> 0)
    out = brain.check_run(study.runs[0], TR_S, "r", motion=m)
    c = [c for c in out if c.name == "motion"][0]
    assert c.level == "warn"
    flagged = set(c.details["flagged"].tolist())
    assert flagged == set(range(20, 28))              # every jerk in and out of the stretch (20, 22, 24, 26)
    assert c.view == "motion" and c.data["fd"].shape == (N_TRS,)
    clean = brain.check_run(study.runs[0], TR_S, "r", motion=brain.read_motion(
        tmp_path / "x.tsv" if write_confounds(tmp_path / "x.tsv", N_TRS) is not None else None))
    assert [c.level for c in clean if c.name == "motion"] == ["pass"]


def test_dead_region_and_dead_run(study):
    data = study.runs[0].copy()
    data[:, 30:60] = 0.0
    out = brain.check_run(data, TR_S, "r", groups=[brain.region_group(n) for n in study.names])
    c = [c for c in out if c.name == "dead_targets"][0]
    assert c.level == "warn" and c.details["n_dead"] == 30
    assert "SomMot (30)" in c.message
    out = brain.check_run(np.zeros((N_TRS, N_TARGETS), np.float32), TR_S, "s33")
    assert [(c.name, c.level) for c in out] == [("dead_targets", "fail")]


def test_raw_units_with_slow_drift_are_flagged(study):
    t = np.linspace(-1, 1, N_TRS)[:, None]
    drift = 40.0 * (t + 0.5 * t ** 2) * np.random.default_rng(1).uniform(0.5, 1.5, N_TARGETS)
    data = study.runs[0] + drift.astype(np.float32)
    out = {c.name: c for c in brain.check_run(data, TR_S, "r")}
    assert out["units_drift"].level == "warn"
    assert out["units_drift"].details["scanner_units"] is True
    assert out["units_drift"].details["median_drift_fraction"] > 0.5
    # the same run, when the project detrends it: fine
    out = {c.name: c for c in brain.check_run(data, TR_S, "r", preprocessing={"detrend": 2})}
    assert out["units_drift"].level == "pass"
    # clean run: no drift reported
    assert {c.name: c for c in brain.check_run(study.runs[0], TR_S, "r")}["units_drift"].level == "pass"


def test_duplicated_and_zero_volumes_fail(study):
    data = study.runs[0].copy()
    data[11] = data[10]
    data[30] = 0
    c = {c.name: c for c in brain.check_run(data, TR_S, "r")}["duplicated_trs"]
    assert c.level == "fail"
    assert c.details["duplicated"].tolist() == [11] and c.details["zero"].tolist() == [30]


def test_words_past_the_end_and_overlapping(study, tmp_path):
    import pandas as pd

    words = pd.DataFrame({"onset_s": [1.0, 2.0, 2.1, 80.0], "duration_s": [0.5, 0.5, 0.5, 0.4],
                          "word": ["a", "b", "c", "d"]})
    out = episode.check_episode("ep", study.video, words=words)
    c = [c for c in out if c.name == "words_timing"][0]
    assert c.level == "fail"
    assert c.details["n_past_end"] == 1 and c.details["n_overlapping"] == 1


def test_long_silence_found():
    sr = 1000
    x = np.sin(np.arange(60 * sr) * 0.3)
    x[20 * sr:33 * sr] = 0.0
    got = episode.silences(x, sr)
    assert len(got) == 1
    assert got[0][0] == pytest.approx(20.0, abs=0.11) and got[0][1] == pytest.approx(33.0, abs=0.11)
    assert episode.silences(x[:19 * sr], sr) == []


def test_tsnr_and_fd_against_references(study):
    data = study.runs[0].astype(np.float64)
    # tSNR with a linear detrend; reference: numpy.polyfit residuals per target
    t = np.arange(N_TRS)
    resid = np.stack([data[:, j] - np.polyval(np.polyfit(t, data[:, j], 1), t) for j in range(N_TARGETS)], 1)
    lin = brain.tsnr(data, detrend_order=1)
    np.testing.assert_allclose(lin, data.mean(0) / resid.std(0, ddof=1), rtol=1e-6)
    params = np.zeros((4, 6))
    params[1, 0] = 0.3
    params[2, 3] = 0.01                                  # 0.01 rad on a 50 mm sphere = 0.5 mm
    np.testing.assert_allclose(brain.framewise_displacement(params), [0, 0.3, 0.3 + 0.5, 0.5])


def test_reliability_ceiling_and_fraction_of_ceiling():
    rng = np.random.default_rng(0)
    n_trs, n_t = 400, 6
    s = rng.standard_normal((n_trs, n_t))
    sig = np.array([1.0, 1.0, 0.5, 0.5, 0.0, 0.0])     # S; noise variance 1
    runs = {f"sub-0{k}": s * sig + rng.standard_normal((n_trs, n_t)) for k in range(1, 5)}
    subjects = {k: k for k in runs}
    rel = reliability.reliability(runs, subjects)
    ev = sig ** 2 / (sig ** 2 + 1)
    np.testing.assert_allclose(rel["ceiling"], ev, atol=0.07)
    c = reliability.check_reliability("ep / parcels", runs, subjects, [f"t{i}" for i in range(n_t)])
    assert c.level == "pass"
    assert c.details["near_zero_targets"] == ["t4", "t5"]
    r = np.array([0.5, 0.3, 0.2, 0.1, 0.05, 0.0])
    frac = reliability.fraction_of_ceiling(r, rel["ceiling"])
    np.testing.assert_allclose(frac[:4], r[:4] / np.sqrt(rel["ceiling"][:4]))
    assert np.isnan(frac[4:]).all()


def test_qc_files_reports_and_json(study, tmp_path):
    from engine.qc import report

    a = write_table(tmp_path / "sub-01_a.tsv", study.runs[0], study.names)
    b = tmp_path / "sub-02_b.tsv"
    data = study.runs[1].copy()
    data[:, :] = 0
    write_table(b, data, study.names)
    rep = qc_files([a, b], tr_s=TR_S, video=study.video, words=study.words, sync=False)
    assert rep.failed
    js = report.to_json_dict(rep)
    assert js["summary"]["fail"] >= 1
    assert any(c["name"] == "dead_targets" and c["level"] == "fail" and c["subject"] == "sub-02_b"
               for c in js["checks"])
    html = report.to_html(rep)
    assert html.startswith('<section class="alignscope-qc">') and "FAIL" in html and "<body" not in html
    text = report.format_text(rep)
    assert "FAIL  dead_targets" in text and text.splitlines()[-1].endswith("FAILED")
    assert checks.summary(rep.checks)["fail"] == js["summary"]["fail"]


def test_volume_tsnr_map_for_nifti_runs(tmp_path, capsys):
    """A NIfTI run's tSNR in volume space: mean / sd after detrending, voxel by voxel, and the
    same values as the per-target map inside the mask; written by `qc --maps`."""
    import nibabel as nib

    import main

    rng = np.random.default_rng(0)
    shape = (6, 5, 4, N_TRS)
    base = rng.uniform(500, 1500, shape[:3])
    sd = rng.uniform(5, 50, shape[:3])
    data = (base[..., None] + sd[..., None] * rng.standard_normal(shape)).astype(np.float32)
    data[0] = 0.0                                             # outside the brain: constant
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms((2.0, 2.0, 2.0, TR_S))
    run_path = tmp_path / "sub-01_task-ep_bold.nii.gz"
    nib.save(img, str(run_path))
    mask = np.ones(shape[:3], np.uint8)
    mask[0] = 0
    nib.save(nib.Nifti1Image(mask, affine), str(tmp_path / "mask.nii.gz"))

    vol = brain.tsnr_volume(run_path)
    t = np.arange(N_TRS)
    v = data[3, 2, 1].astype(float)
    resid = v - np.polyval(np.polyfit(t, v, 2), t)
    assert np.asarray(vol.dataobj)[3, 2, 1] == pytest.approx(v.mean() / resid.std(ddof=1), rel=1e-4)
    assert (np.asarray(vol.dataobj)[0] == 0).all()
    np.testing.assert_allclose(vol.affine, affine)

    p = Project(name="vol")
    p.runs.append(RunRef("sub-01_vol", str(run_path), "episode", space="volume", tr_s=TR_S,
                         mask=str(tmp_path / "mask.nii.gz")))
    f = p.save(tmp_path / "vol.alignscope.json")
    assert main.main(["qc", str(f), "--maps", str(tmp_path / "maps")]) == 0
    assert "maps: 2 file(s)" in capsys.readouterr().out
    written = nib.load(str(tmp_path / "maps" / "sub-01_vol_tsnr.nii.gz"))
    np.testing.assert_allclose(np.asarray(written.dataobj), np.asarray(vol.dataobj), rtol=1e-6)
    per_target = np.load(tmp_path / "maps" / "sub-01_vol_tsnr.npy")
    np.testing.assert_allclose(per_target, np.asarray(vol.dataobj)[mask.astype(bool)], rtol=1e-4)
