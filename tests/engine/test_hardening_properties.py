"""Property tests (hypothesis) of the text parsers and the project-file loader.

For any input, a parser either returns a well-formed table (columns, finite times, sorted
onsets, durations >= 0) or raises an :class:`engine.errors.AlignScopeError`; nothing else
escapes. Valid files written from generated cues/words/intervals read back exactly.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from engine.errors import AlignScopeError  # noqa: E402
from engine.io import text as T  # noqa: E402

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_DIR = Path(tempfile.mkdtemp(prefix="alignscope-props-"))
_counter = [0]


def _write(suffix: str, content) -> Path:
    _counter[0] += 1
    p = _DIR / f"f{_counter[0]}{suffix}"
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def _well_formed(df, text_col):
    assert list(df.columns[:3]) == ["onset_s", "duration_s", text_col]
    on = df["onset_s"].to_numpy(float)
    du = df["duration_s"].to_numpy(float)
    assert np.isfinite(on).all() and np.isfinite(du).all()
    assert (du >= 0).all()
    assert (np.diff(on) >= 0).all()
    assert all(isinstance(w, str) for w in df[text_col])


def _parse_all(path: Path):
    """Every reader of a text source: each returns well-formed output or a clean error."""
    for fn, col in ((T.read_words, "word"), (T.read_cues, "text")):
        try:
            df = fn(path)
        except AlignScopeError:
            continue
        _well_formed(df, col)


# ---- arbitrary input never crashes a parser ----------------------------------------------------
_SUB_ALPHABET = st.sampled_from(list("0123456789:,.-> \n\tWEBVTTabc<>{}\\&;\"'!ooTextFileTextGridIntervalTier[]=é"))
_noisy = st.lists(_SUB_ALPHABET, max_size=300).map("".join)


@SETTINGS
@given(body=st.one_of(st.text(max_size=300), _noisy), suffix=st.sampled_from([".srt", ".vtt", ".TextGrid",
                                                                              ".tsv", ".csv"]))
def test_arbitrary_text_is_parsed_or_refused_cleanly(body, suffix):
    _parse_all(_write(suffix, body))


@SETTINGS
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".srt", ".vtt", ".TextGrid", ".tsv"]))
def test_arbitrary_bytes_are_parsed_or_refused_cleanly(data, suffix):
    _parse_all(_write(suffix, data))


# ---- valid files round-trip ----------------------------------------------------------------------
_word = st.text(alphabet=st.sampled_from(list("abcdefghijklmnopqrstuvwxyzé")), min_size=1, max_size=8)


@st.composite
def cue_lists(draw):
    n = draw(st.integers(1, 8))
    gaps = draw(st.lists(st.integers(0, 5000), min_size=n, max_size=n))
    durs = draw(st.lists(st.integers(1, 4000), min_size=n, max_size=n))
    texts = draw(st.lists(st.lists(_word, min_size=1, max_size=5).map(" ".join), min_size=n, max_size=n))
    cues, t = [], 0
    for g, d, txt in zip(gaps, durs, texts):
        t += g
        cues.append((t, t + d, txt))
        t += d
    return cues


def _stamp(ms: int, sep: str) -> str:
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{milli:03d}"


@SETTINGS
@given(cues=cue_lists(), vtt=st.booleans(), crlf=st.booleans())
def test_subtitles_round_trip(cues, vtt, crlf):
    sep = "." if vtt else ","
    blocks = [f"{i + 1}\n{_stamp(a, sep)} --> {_stamp(b, sep)}\n{txt}\n" for i, (a, b, txt) in enumerate(cues)]
    text = ("WEBVTT\n\n" if vtt else "") + "\n".join(blocks)
    if crlf:
        text = text.replace("\n", "\r\n")
    df = (T.read_vtt if vtt else T.read_srt)(_write(".vtt" if vtt else ".srt", text))
    assert df["onset_s"].tolist() == [a / 1000 for a, _, _ in cues]
    assert np.allclose(df["duration_s"], [(b - a) / 1000 for a, b, _ in cues], atol=1e-9)
    assert df["text"].tolist() == [txt for _, _, txt in cues]
    words = T.read_words(_write(".vtt" if vtt else ".srt", text))
    assert words["word"].tolist() == " ".join(txt for _, _, txt in cues).split()


@SETTINGS
@given(cues=cue_lists(), short=st.booleans())
def test_textgrid_round_trip(cues, short):
    xmax = cues[-1][1] / 1000 + 1
    if short:
        lines = ['File type = "ooTextFile short"', '"TextGrid"', "0", f"{xmax}", "<exists>", "1",
                 '"IntervalTier"', '"words"', "0", f"{xmax}", str(len(cues))]
        for a, b, txt in cues:
            lines += [f"{a / 1000}", f"{b / 1000}", f'"{txt}"']
    else:
        lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {xmax}",
                 "tiers? <exists>", "size = 1", "item []:", "    item [1]:", '        class = "IntervalTier"',
                 '        name = "words"', "        xmin = 0", f"        xmax = {xmax}",
                 f"        intervals: size = {len(cues)}"]
        for i, (a, b, txt) in enumerate(cues):
            lines += [f"        intervals [{i + 1}]:", f"            xmin = {a / 1000}",
                      f"            xmax = {b / 1000}", f'            text = "{txt}"']
    df = T.read_textgrid_intervals(_write(".TextGrid", "\n".join(lines) + "\n"))
    assert df["onset_s"].tolist() == [a / 1000 for a, _, _ in cues]
    assert df["word"].tolist() == [txt for _, _, txt in cues]


@SETTINGS
@given(cues=cue_lists(), sep=st.sampled_from(["\t", ","]))
def test_word_table_round_trip(cues, sep):
    rows = [sep.join(["onset", "duration", "word"])]
    words = []
    for a, b, txt in cues:
        w = txt.split()[0]
        rows.append(sep.join([f"{a / 1000}", f"{(b - a) / 1000}", w]))
        words.append(w)
    df = T.read_words(_write(".tsv" if sep == "\t" else ".csv", "\n".join(rows) + "\n"))
    assert df["word"].tolist() == words
    assert np.allclose(df["onset_s"], [a / 1000 for a, _, _ in cues])


@SETTINGS
@given(cues=cue_lists(), cuts=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 20),
                                                 st.sampled_from(["", "-->", ":", "\n", "99", "\x00", "é"])),
                                       min_size=1, max_size=4))
def test_mutated_subtitles_never_crash(cues, cuts):
    text = "\n".join(f"{i + 1}\n{_stamp(a, ',')} --> {_stamp(b, ',')}\n{txt}\n" for i, (a, b, txt) in enumerate(cues))
    for pos, n, insert in cuts:
        pos %= max(1, len(text))
        text = text[:pos] + insert + text[pos + n:]
    _parse_all(_write(".srt", text))


# ---- the project-file loader -------------------------------------------------------------------------
_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10 ** 6), st.floats(allow_nan=False),
                          st.text(max_size=12))
_json = st.recursive(_json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                     max_leaves=12)

_VALID = {"schema_version": 1, "application": "AlignScope", "name": "p",
          "episodes": [{"name": "e1", "video": "e1.mp4"}],
          "runs": [{"name": "r1", "path": "r1.npy", "episode": "e1", "space": "parcels", "tr_s": 1.49,
                    "onset_s": 0.0, "dropped_volumes": 0}],
          "atlases": [], "preprocessing": {}, "features": {}, "results": {"enc": "results/enc.h5"}, "extra": {}}


def _load(d):
    from engine.project import Project

    p = _write(".alignscope.json", json.dumps(d))
    try:
        return Project.load(p)
    except AlignScopeError:
        return None


@SETTINGS
@given(doc=_json)
def test_any_json_is_a_project_or_a_clean_error(doc):
    _load(doc)


def _checked_types(project):
    """A loaded project has fields of the documented types (or the loader refused it)."""
    for e in project.episodes:
        assert isinstance(e.name, str)
        for f in ("video", "audio", "subtitles", "words", "events"):
            assert getattr(e, f) is None or isinstance(getattr(e, f), str)
    for r in project.runs:
        assert isinstance(r.name, str) and isinstance(r.path, str) and isinstance(r.episode, str)
        assert isinstance(r.tr_s, (int, float)) and not isinstance(r.tr_s, bool) and math.isfinite(r.tr_s) \
            and r.tr_s > 0
        assert isinstance(r.onset_s, (int, float)) and math.isfinite(r.onset_s)
        assert isinstance(r.dropped_volumes, int) and r.dropped_volumes >= 0
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in project.results.items())


@SETTINGS
@given(where=st.sampled_from(["name", "episodes", "runs", "results", "run.tr_s", "run.path", "run.name",
                              "run.dropped_volumes", "run.onset_s", "episode.video", "episode.name"]),
       value=_json)
def test_a_project_field_of_the_wrong_type_is_refused_at_load(where, value):
    doc = json.loads(json.dumps(_VALID))
    if where.startswith("run."):
        doc["runs"][0][where[4:]] = value
    elif where.startswith("episode."):
        doc["episodes"][0][where[8:]] = value
    else:
        doc[where] = value
    project = _load(doc)
    if project is not None:
        _checked_types(project)


def test_valid_project_loads():
    project = _load(_VALID)
    assert project is not None and project.runs[0].tr_s == 1.49
    _checked_types(project)
