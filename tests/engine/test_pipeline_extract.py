"""``extract`` for stimuli without a video (an audio file, a word table, an events file), the TR
printed and stored and never guessed, progress bars only on a terminal."""

import io

import h5py
import numpy as np
import pandas as pd
import pytest

import main
from engine.errors import ConfigError
from engine.pipeline.data import classify_stimulus

TR_S = 2.0
SR = 16000
SECONDS = 30.0


def _story(tmp_path):
    """A 30 s 'podcast': a 220 Hz tone loud in 5-15 s, words at 1/s in 10-25 s, two event types."""
    from scipy.io import wavfile

    t = np.arange(int(SECONDS * SR)) / SR
    amp = np.where((t >= 5) & (t < 15), 0.8, 0.05)
    wavfile.write(tmp_path / "story.wav", SR, (amp * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16))
    words = pd.DataFrame({"onset": np.arange(10.0, 25.0, 1.0), "duration": 0.4,
                          "word": [f"w{k}" for k in range(15)]})
    xmax = SECONDS
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {xmax}",
             "tiers? <exists>", "size = 1", "item []:", "    item [1]:", '        class = "IntervalTier"',
             '        name = "words"', "        xmin = 0", f"        xmax = {xmax}",
             f"        intervals: size = {len(words)}"]
    for k, row in words.iterrows():
        lines += [f"        intervals [{k + 1}]:", f"            xmin = {row.onset}",
                  f"            xmax = {row.onset + row.duration}", f'            text = "{row.word}"']
    (tmp_path / "story.TextGrid").write_text("\n".join(lines) + "\n")
    words.to_csv(tmp_path / "words.tsv", sep="\t", index=False)
    pd.DataFrame({"onset": [4.0, 20.0], "duration": [4.0, 2.0], "trial_type": ["music", "laugh"]}).to_csv(
        tmp_path / "task-story_events.tsv", sep="\t", index=False)
    np.savetxt(tmp_path / "claps.txt", np.array([[6.0, 2.0, 1.0], [16.0, 0.0, 1.0]]), fmt="%.1f")
    return words


def test_stimulus_files_are_recognised_by_content(tmp_path):
    _story(tmp_path)
    assert classify_stimulus(tmp_path / "story.wav") == "audio"
    assert classify_stimulus(tmp_path / "story.TextGrid") == "words"
    assert classify_stimulus(tmp_path / "words.tsv") == "words"            # onset, duration AND a word column
    assert classify_stimulus(tmp_path / "task-story_events.tsv") == "events"
    assert classify_stimulus(tmp_path / "claps.txt") == "events"           # FSL three columns
    with pytest.raises(Exception, match="no file"):
        classify_stimulus(tmp_path / "missing.wav")


def test_audio_and_words_without_video(tmp_path, monkeypatch, capsys):
    from engine.features.lowlevel import audio_features, word_rate
    from engine.io.events import events_to_regressors, read_events
    from engine.io.text import read_words
    from engine.io.video import read_audio

    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "cache"))
    _story(tmp_path)
    out = tmp_path / "story.h5"
    rc = main.main(["extract", str(tmp_path / "story.wav"), str(tmp_path / "story.TextGrid"),
                    str(tmp_path / "task-story_events.tsv"), "--model", "lowlevel", "--tr", str(TR_S),
                    "--out", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    assert "TR: 2 s (from --tr); 15 TRs" in captured.out
    assert "extract: done" in captured.err and "[" not in captured.err      # no bar when stderr is not a TTY
    n = int(SECONDS // TR_S)
    samples, sr = read_audio(tmp_path / "story.wav", sr=SR)
    ref_audio = audio_features(samples, sr, n, TR_S)
    ref_words = word_rate(read_words(tmp_path / "story.TextGrid"), n, TR_S)
    ref_events = events_to_regressors(read_events(tmp_path / "task-story_events.tsv"), n, TR_S)
    with h5py.File(out, "r") as f:
        assert sorted(f["features"]) == ["audio_envelope", "events", "mel", "word_rate"]
        assert float(f.attrs["tr_s"]) == TR_S
        np.testing.assert_array_equal(f["features/audio_envelope"][...], ref_audio["audio_envelope"])
        np.testing.assert_array_equal(f["features/word_rate"][...], np.asarray(ref_words).reshape(n, -1))
        np.testing.assert_array_equal(f["features/events"][...], ref_events.to_numpy(np.float32))
        env = f["features/audio_envelope"][:, 0]
        words_per_tr = f["features/word_rate"][:, 0]
    # planted: loud 5-15 s (TRs 3-6), words 10-25 s (TRs 5-12)
    assert env[3:7].min() > 3 * env[8:].max()
    assert words_per_tr[:5].max() == 0 and words_per_tr[6:12].min() > 0
    # a word table alone: a language model is the default (MiniLM ships with the installation)
    rc = main.main(["extract", str(tmp_path / "words.tsv"), "--tr", str(TR_S), "--layers", "1.0",
                    "--out", str(tmp_path / "w.h5"), "--no-progress"])
    assert rc == 0
    with h5py.File(tmp_path / "w.h5", "r") as f:
        assert list(f["features"]) == ["layer06"] and f["features/layer06"].shape == (12, 384)  # words end at 24.4 s
    # events alone (FSL three columns) become regressors
    rc = main.main(["extract", str(tmp_path / "claps.txt"), "--tr", str(TR_S), "--n-trs", "15",
                    "--out", str(tmp_path / "e.h5"), "--no-progress"])
    assert rc == 0
    with h5py.File(tmp_path / "e.h5", "r") as f:
        claps = f["features/events"][:, 0]
    assert list(np.flatnonzero(claps)) == [3, 8] and claps[3] == 1.0


def test_the_tr_is_never_guessed(tmp_path, capsys):
    _story(tmp_path)
    rc = main.main(["extract", str(tmp_path / "story.wav"), "--out", str(tmp_path / "x.h5")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--tr" in err and "Traceback" not in err and not (tmp_path / "x.h5").exists()


def test_progress_bar_only_on_a_terminal():
    from engine.cli.common import run_job
    from engine.jobs import Progress

    def job():
        for k in range(3):
            yield Progress(k + 1, 3, f"step {k + 1}")
        return "done"

    class Tty(io.StringIO):
        def isatty(self):
            return True

    pipe, tty = io.StringIO(), Tty()
    assert run_job(job(), "demo job", stream=pipe) == "done"
    assert pipe.getvalue().count("\n") == 1 and pipe.getvalue().startswith("demo job: done (3/3 steps")
    assert run_job(job(), "demo job", stream=tty) == "done"
    assert "\r" in tty.getvalue() and "[" in tty.getvalue()
    quiet = io.StringIO()
    run_job(job(), "demo job", no_progress=True, stream=quiet)
    assert quiet.getvalue() == ""
    with pytest.raises(ConfigError):
        from engine.cli.common import parse_alphas

        parse_alphas("1:x:3")
