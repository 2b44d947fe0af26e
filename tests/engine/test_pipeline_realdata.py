"""Real recordings through the command line: the Alice story (Brennan et al. 2016, one run per subject,
TR 2 s, no video). Word rate from the TextGrid (``extract``), default preprocessing and within-run CV
(``encode``), significance by permutations refitting the CV (``stats``): the left posterior temporal
ROI is predicted above chance; the same words played backwards in time are not."""

from pathlib import Path

import h5py
import numpy as np
import pytest

import main
from engine.encoding.results import EncodingResult

ALICE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "alice_brennan2016"
ROIS = ["LATL", "RATL", "LPTL", "LIPL", "LPreM", "LIFG"]


@pytest.fixture(scope="module")
def alice(tmp_path_factory):
    if not (ALICE / "alice_stim_shared").is_dir():
        pytest.skip(f"real data absent: {ALICE}")
    tmp = tmp_path_factory.mktemp("alice")
    files = [f for f in sorted((ALICE / "alice_data_shared" / "6mm").glob("s*-timecourses.txt"))
             if not f.name.startswith("s33")]                # s33 is all zeros in the release
    runs = []
    for f in files:
        y = np.loadtxt(f)                                    # 362 TRs x 6 ROIs, raw scanner units
        runs.append((y - y.mean(0)) / y.std(0))
    np.savetxt(tmp / "group.tsv", np.mean(runs, axis=0), delimiter="\t", header="\t".join(ROIS), comments="",
               fmt="%.6f")
    return tmp


def test_word_rate_predicts_left_posterior_temporal_cortex(alice, monkeypatch, capsys):
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(alice / "cache"))
    textgrid = ALICE / "alice_stim_shared" / "DownTheRabbitHoleFinal_exp120_pad_1.TextGrid"
    # the first 10 volumes (20 s) were dropped from the time courses: TR 0 starts at 20 s
    assert main.main(["extract", str(textgrid), "--model", "lowlevel", "--tr", "2", "--onset", "20",
                      "--n-trs", "362", "--out", str(alice / "words.h5"), "--no-progress"]) == 0
    with h5py.File(alice / "words.h5", "r") as f:
        rate = f["features/word_rate"][...]
    np.save(alice / "reversed.npy", rate[::-1].copy())      # control: same words, wrong times
    for name, feats in (("words", alice / "words.h5"), ("reversed", alice / "reversed.npy")):
        assert main.main(["encode", "--features", str(feats), "--brain", str(alice / "group.tsv"), "--tr", "2",
                          "--out", str(alice / f"enc_{name}.h5"), "--no-progress"]) == 0
        assert main.main(["stats", str(alice / f"enc_{name}.h5"), "--n-perm", "49", "--block", "10", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "within-run" in text                              # one run: blocked CV chosen by default
    words = EncodingResult.load(alice / "enc_words.h5")
    control = EncodingResult.load(alice / "enc_reversed.h5")
    lptl = ROIS.index("LPTL")
    assert words.scores[lptl] > 0.2 and words.q_values[lptl] <= 0.05
    assert control.q_values[lptl] > 0.05 and control.scores[lptl] < words.scores[lptl] - 0.15
