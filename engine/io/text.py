"""Subtitles and word timings: one normalised form for every source.

Every reader returns a pandas DataFrame sorted by onset, in seconds from episode start:

- :func:`read_words` -> columns ``onset_s, duration_s, word`` (one row per spoken word);
- :func:`read_cues` -> columns ``onset_s, duration_s, text`` (one row per subtitle cue,
  or per sentence/chunk for word-level sources).

Supported sources (chosen by file extension, TSV/CSV by their columns):

==========================  ===========================================================
SubRip ``.srt``             cues; words spread over each cue (see below)
WebVTT ``.vtt``             cues; words spread over each cue
Praat ``.TextGrid``         the word tier (long or short text format, UTF-8 or UTF-16);
                            pause labels (``sp``, ``sil``, empty...) are not words but
                            are counted in ``DataFrame.attrs["n_pauses"]``
Algonauts 2025 transcript   TSV with ``text_per_tr, words_per_tr, onsets_per_tr,
                            durations_per_tr`` (list-like strings, one row per 1.49 s TR)
word TSV                    columns ``onset, duration, word`` (``_s`` suffixes accepted)
cue TSV                     columns ``text, onset, duration``
==========================  ===========================================================

Word times inside a subtitle cue
--------------------------------
Subtitles only time whole cues. :func:`read_words` splits a cue's text at white space and
gives each word a share of the cue's duration proportional to its length in letters and
digits (punctuation is not spoken; a word with none counts as one character). Words follow
each other without gaps, the first starting at the cue's onset and the last ending at its
end. This is an approximation (speech rate is not uniform); use a forced alignment
(TextGrid, word TSV) where word timing matters.

Sentences from word-level sources
---------------------------------
:func:`read_cues` on a word-level source groups words into cues: a new cue starts after a
word ending a sentence (``.``, ``?``, ``!``, ``…``) or after a silence of at least
``max_gap_s`` (0.5 s) between words; a group longer than ``max_words`` (20) is split at
its longest internal silence. Clitics that aligners split off (``'s``, ``n't``) are
joined back to the previous word in the cue text.
"""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..errors import DataError

WORD_COLUMNS = ["onset_s", "duration_s", "word"]
CUE_COLUMNS = ["onset_s", "duration_s", "text"]
ALGONAUTS_COLUMNS = ["text_per_tr", "words_per_tr", "onsets_per_tr", "durations_per_tr"]
ALGONAUTS_TR_S = 1.49

#: Interval labels that mean "no word here" in forced alignments (compared lower-case).
PAUSE_LABELS = frozenset({"", "sp", "sil", "<sil>", "{sl}", "<p:>", "pau", "#", "spn"})

_SENTENCE_END = re.compile(r"[.?!…]+[\"'”’)\]]*$")
_TAG = re.compile(r"<[^>]*>")
_ASS_TAG = re.compile(r"\{\\[^}]*\}")


# ------------------------------------------------------------------------------ helpers
def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataError(f"text file: expected an existing file, found no file at {path}")
    if path.is_dir():
        raise DataError(f"text file: expected a file, found a directory at {path}")
    if not path.is_file():   # reading a FIFO or a device would block or never end
        raise DataError(f"text file: expected a regular file, found a FIFO, socket or device at {path}")
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    if len(raw) >= 4 and raw[0] == 0 and raw[2] == 0 and raw[1] != 0:
        return raw.decode("utf-16-be")
    if len(raw) >= 4 and raw[1] == 0 and raw[3] == 0 and raw[0] != 0:
        return raw.decode("utf-16-le")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _frame(rows: List[Tuple[float, float, str]], columns: Sequence[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(columns))
    df[columns[0]] = df[columns[0]].astype(np.float64)
    df[columns[1]] = df[columns[1]].astype(np.float64)
    df[columns[2]] = df[columns[2]].astype(object)
    df = df.sort_values(columns[0], kind="stable").reset_index(drop=True)
    return df


def _clean_cue_text(text: str) -> str:
    text = _ASS_TAG.sub("", text)
    text = _TAG.sub("", text)
    text = html.unescape(text)
    return " ".join(text.split())


def _letters(word: str) -> int:
    return max(1, sum(ch.isalnum() for ch in word))


def spread_words(onset_s: float, duration_s: float, text: str) -> List[Tuple[float, float, str]]:
    """Split a cue's text into words timed in proportion to their length in letters.

    Parameters
    ----------
    onset_s, duration_s : float
        The cue's timing.
    text : str
        The cue's text.

    Returns
    -------
    list of (onset_s, duration_s, word)
        Consecutive words covering exactly ``[onset_s, onset_s + duration_s)``.
    """
    words = [w for w in text.split() if any(ch.isalnum() for ch in w)]
    if not words:
        return []
    weights = np.array([_letters(w) for w in words], dtype=np.float64)
    edges = onset_s + duration_s * np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum()
    return [(float(edges[k]), float(edges[k + 1] - edges[k]), w) for k, w in enumerate(words)]


def _join_tokens(tokens: Sequence[str]) -> str:
    """Join word tokens into text; clitics split off by aligners ('s, n't) attach back."""
    out = ""
    for tok in tokens:
        if out and (tok.startswith("'") or tok.startswith("’") or tok.lower() == "n't"):
            out += tok
        else:
            out = f"{out} {tok}" if out else tok
    return out


def group_words(words: pd.DataFrame, max_gap_s: float = 0.5, max_words: int = 20) -> pd.DataFrame:
    """Group words into sentence-like cues (see the module notes).

    Words are first cut after sentence-final punctuation and at silences of at least
    ``max_gap_s``; a group still longer than ``max_words`` is split at its longest
    internal silence (recursively), so that no cue ends on a one-word remainder.

    Parameters
    ----------
    words : DataFrame[onset_s, duration_s, word]
    max_gap_s : float
        A silence at least this long between two words starts a new cue.
    max_words : int
        Longest cue in words.

    Returns
    -------
    DataFrame[onset_s, duration_s, text]
    """
    onsets = words["onset_s"].to_numpy(float)
    ends = onsets + words["duration_s"].to_numpy(float)
    tokens = words["word"].astype(str).tolist()
    n = len(tokens)
    max_words = max(1, int(max_words))
    cuts = [0]
    for k in range(1, n):
        if onsets[k] - ends[k - 1] >= max_gap_s or _SENTENCE_END.search(tokens[k - 1]):
            cuts.append(k)
    cuts.append(n)

    def split(a: int, b: int) -> List[Tuple[int, int]]:
        if b - a <= max_words:
            return [(a, b)]
        margin = min(3, (b - a) // 2)
        gaps = onsets[a + margin:b - margin + 1] - ends[a + margin - 1:b - margin]
        k = a + margin + int(np.argmax(gaps))
        return split(a, k) + split(k, b)

    rows = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        for lo, hi in split(a, b):
            start, stop = onsets[lo], float(np.max(ends[lo:hi]))
            rows.append((float(start), float(stop - start), _join_tokens(tokens[lo:hi])))
    return _frame(rows, CUE_COLUMNS)


def _check_times(df: pd.DataFrame, path: Path, line_numbers: Optional[Sequence[int]] = None,
                 onset_col: str = "onset_s", duration_col: str = "duration_s") -> None:
    onsets = df[onset_col].to_numpy(float)
    durations = df[duration_col].to_numpy(float)
    bad = np.flatnonzero(~np.isfinite(onsets))
    if len(bad):
        where = _rows(bad, line_numbers)
        raise DataError(
            f"{path.name}: expected a number of seconds in every onset, found "
            f"{len(bad)} missing/NaN onset(s) at {where}"
        )
    bad = np.flatnonzero(~np.isfinite(durations) | (durations < 0))
    if len(bad):
        where = _rows(bad, line_numbers)
        raise DataError(
            f"{path.name}: expected durations >= 0 s, found {len(bad)} negative or NaN "
            f"duration(s) at {where}"
        )


def _rows(bad, line_numbers) -> str:
    if line_numbers is not None:
        listed = ", ".join(str(line_numbers[i]) for i in bad[:5])
        return f"line{'s' if len(bad) > 1 else ''} {listed}" + (" ..." if len(bad) > 5 else "")
    listed = ", ".join(str(i) for i in bad[:5])
    return f"row{'s' if len(bad) > 1 else ''} {listed}" + (" ..." if len(bad) > 5 else "")


# ------------------------------------------------------------------------------ SRT / VTT
_SRT_TIME = re.compile(
    r"^\s*(?P<a>\d+:\d{1,2}:\d{1,2}[,.]\d{1,3})\s*-->\s*(?P<b>\d+:\d{1,2}:\d{1,2}[,.]\d{1,3})(?:\s.*)?$"
)
_CLOCKISH = re.compile(r"\d+\s*:\s*\d+")
_VTT_STAMP = r"(?:\d+:)?\d{1,2}:\d{1,2}\.\d{1,3}"
_VTT_TIME = re.compile(rf"^\s*(?P<a>{_VTT_STAMP})\s*-->\s*(?P<b>{_VTT_STAMP})(?:\s.*)?$")


def _clock_to_s(stamp: str) -> float:
    """'HH:MM:SS,mmm' / 'MM:SS.mmm' -> seconds, exact to the millisecond."""
    stamp = stamp.replace(",", ".")
    parts = stamp.split(":")
    whole, _, frac = parts[-1].partition(".")
    seconds = int(whole)
    minutes = int(parts[-2]) if len(parts) >= 2 else 0
    hours = int(parts[-3]) if len(parts) >= 3 else 0
    if seconds >= 60 or minutes >= 60:
        raise ValueError(stamp)
    millis = int((frac + "000")[:3]) if frac else 0
    return (((hours * 60 + minutes) * 60 + seconds) * 1000 + millis) / 1000.0


def _parse_cue_blocks(text: str, path: Path, kind: str) -> Tuple[List[Tuple[float, float, str]], List[int]]:
    """Shared SRT/VTT parser: returns cues and the line number of each cue's timing line.

    Line-based, so that common deviations still parse: cues not separated by a blank
    line, blank lines inside a cue's text, missing cue numbers. A line that looks like
    a timestamp but is not one is an error naming its line number.
    """
    pattern = _SRT_TIME if kind == "SubRip" else _VTT_TIME
    example = "00:01:25,210 --> 00:01:28,004" if kind == "SubRip" else "00:01:25.210 --> 00:01:28.004"
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    n = len(lines)
    k = 0
    if kind == "WebVTT":
        if not lines or not lines[0].lstrip("\ufeff").startswith("WEBVTT"):
            raise DataError(
                f"{path.name} line 1: expected a WebVTT header 'WEBVTT', found {lines[0][:40]!r}"
                if lines and lines[0].strip() else
                f"{path.name} line 1: expected a WebVTT header 'WEBVTT', found an empty line"
            )
        k = 1
        while k < n and lines[k].strip():  # header block (metadata lines)
            k += 1

    def is_timing(j: int) -> bool:
        return j < n and "-->" in lines[j]

    cues: List[Tuple[float, float, str]] = []
    cue_lines: List[int] = []
    while k < n:
        line = lines[k].strip()
        if not line:
            k += 1
            continue
        if kind == "WebVTT" and line.startswith(("NOTE", "STYLE", "REGION")) and not is_timing(k):
            while k < n and lines[k].strip():
                k += 1
            continue
        if not is_timing(k):
            if is_timing(k + 1):  # a cue number (SRT) or identifier (VTT)
                k += 1
                continue
            if line.isdigit() and kind == "SubRip":
                found = lines[k + 1].strip() if k + 1 < n else ""
                raise DataError(
                    f"{path.name} line {k + 2}: expected a timing line like '{example}' after cue "
                    f"number {line}, found {found[:60]!r}" if found else
                    f"{path.name} line {k + 2}: expected a timing line like '{example}' after cue "
                    f"number {line}, found none"
                )
            if _CLOCKISH.search(line) or not cues:
                raise DataError(
                    f"{path.name} line {k + 1}: expected a timing line like '{example}', "
                    f"found {line[:60]!r}"
                )
            # A blank line inside a cue's text (seen in real files): the text continues.
            start_s, dur_s, body = cues[-1]
            cues[-1] = (start_s, dur_s, f"{body} {_clean_cue_text(line)}".strip())
            k += 1
            continue
        line_no = k + 1
        m = pattern.match(lines[k])
        if m is None:
            raise DataError(
                f"{path.name} line {line_no}: expected a timing line like '{example}', "
                f"found {line[:60]!r}"
            )
        try:
            start_s, stop_s = _clock_to_s(m.group("a")), _clock_to_s(m.group("b"))
        except ValueError:
            raise DataError(
                f"{path.name} line {line_no}: expected minutes and seconds below 60 in "
                f"'{example}', found {line[:60]!r}"
            ) from None
        if stop_s < start_s:
            raise DataError(
                f"{path.name} line {line_no}: expected a cue end after its start, found "
                f"{m.group('b')} before {m.group('a')}"
            )
        k += 1
        body_lines = []
        while k < n and lines[k].strip() and not is_timing(k) and not (
            lines[k].strip().isdigit() and is_timing(k + 1)
        ):
            body_lines.append(lines[k])
            k += 1
        body = _clean_cue_text(" ".join(body_lines))
        if body:
            cues.append((start_s, stop_s - start_s, body))
            cue_lines.append(line_no)
    return cues, cue_lines


def read_srt(path) -> pd.DataFrame:
    """Read a SubRip file into cues ``DataFrame[onset_s, duration_s, text]``.

    Lines of a cue are joined with a space; formatting tags (``<i>``, ``{\\an8}``) removed.
    """
    path = Path(path)
    cues, _ = _parse_cue_blocks(_read_text(path), path, "SubRip")
    return _frame(cues, CUE_COLUMNS)


def read_vtt(path) -> pd.DataFrame:
    """Read a WebVTT file into cues ``DataFrame[onset_s, duration_s, text]``.

    NOTE/STYLE/REGION blocks are skipped; cue settings, voice and class tags removed.
    """
    path = Path(path)
    cues, _ = _parse_cue_blocks(_read_text(path), path, "WebVTT")
    return _frame(cues, CUE_COLUMNS)


# ------------------------------------------------------------------------------ TextGrid
_TG_TOKEN = re.compile(
    r'"(?P<str>(?:[^"]|"")*)"'  # a string ("" is an escaped quote)
    r"|(?P<idx>\[\s*\d*\s*\])"  # long-format indices: item [1]:, intervals [3]:
    r"|(?P<flag><exists>|<absent>)"
    r"|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<comment>!.*$)",
    re.MULTILINE,
)


def read_textgrid(path) -> dict:
    """Parse a Praat TextGrid (long or short text format).

    Returns
    -------
    dict
        ``{"xmin": float, "xmax": float, "tiers": [{"name", "class", "intervals"}...]}``
        where ``intervals`` is a list of ``(xmin, xmax, text)`` for interval tiers and
        ``(time, None, mark)`` for point tiers.
    """
    path = Path(path)
    text = _read_text(path)
    tokens = []
    for m in _TG_TOKEN.finditer(text):
        if m.group("str") is not None:
            tokens.append(("s", m.group("str").replace('""', '"')))
        elif m.group("num") is not None:
            tokens.append(("n", float(m.group("num"))))
        elif m.group("flag") is not None:
            tokens.append(("f", m.group("flag")))
    pos = 0

    def take(kind, what):
        nonlocal pos
        if pos >= len(tokens):
            raise DataError(f"{path.name}: expected {what} in the TextGrid, found the end of the file")
        k, v = tokens[pos]
        if k != kind:
            raise DataError(f"{path.name}: expected {what} in the TextGrid, found {v!r}")
        pos += 1
        return v

    file_type = take("s", '"ooTextFile"')
    if file_type not in ("ooTextFile", "ooTextFile short"):
        raise DataError(f"{path.name}: expected a Praat text file ('ooTextFile'), found {file_type!r}")
    obj = take("s", '"TextGrid"')
    if obj != "TextGrid":
        raise DataError(f"{path.name}: expected a TextGrid object, found a {obj!r}")
    xmin = take("n", "the start time")
    xmax = take("n", "the end time")
    if pos < len(tokens) and tokens[pos][0] == "f":
        if tokens[pos][1] == "<absent>":
            return {"xmin": xmin, "xmax": xmax, "tiers": []}
        pos += 1
    n_tiers = int(take("n", "the number of tiers"))
    tiers = []
    for _ in range(n_tiers):
        cls = take("s", "a tier class (IntervalTier or TextTier)")
        name = take("s", "a tier name")
        take("n", "the tier start")
        take("n", "the tier end")
        n_items = int(take("n", "the number of intervals"))
        items = []
        if cls == "IntervalTier":
            for _ in range(n_items):
                a = take("n", "an interval start")
                b = take("n", "an interval end")
                items.append((a, b, take("s", "an interval label")))
        elif cls == "TextTier":
            for _ in range(n_items):
                t = take("n", "a point time")
                items.append((t, None, take("s", "a point label")))
        else:
            raise DataError(f"{path.name}: expected tier class IntervalTier or TextTier, found {cls!r}")
        tiers.append({"name": name, "class": cls, "intervals": items})
    return {"xmin": xmin, "xmax": xmax, "tiers": tiers}


_WORD_TIER_NAMES = ("word", "words", "wrd", "wd", "wort", "mot", "mots")


def _word_tier(grid: dict, path: Path, tier: Optional[str]) -> dict:
    interval_tiers = [t for t in grid["tiers"] if t["class"] == "IntervalTier"]
    found = ", ".join(f"{t['name']!r} ({t['class']})" for t in grid["tiers"]) or "no tiers"
    if tier is not None:
        for t in interval_tiers:
            if t["name"] == tier:
                return t
        raise DataError(f"{path.name}: expected an interval tier named {tier!r}, found {found}")
    for t in interval_tiers:
        if t["name"].strip().lower() in _WORD_TIER_NAMES:
            return t
    for t in interval_tiers:
        if "word" in t["name"].lower():
            return t
    raise DataError(
        f"{path.name}: expected a word tier (an interval tier named one of "
        f"{', '.join(_WORD_TIER_NAMES)}), found {found}; pass tier=<name> to choose one"
    )


def read_textgrid_intervals(path, tier: Optional[str] = None) -> pd.DataFrame:
    """All intervals of the word tier, pauses included.

    Returns
    -------
    DataFrame[onset_s, duration_s, word, is_pause]
    """
    path = Path(path)
    t = _word_tier(read_textgrid(path), path, tier)
    rows = [(a, b - a, label.strip()) for a, b, label in t["intervals"]]
    df = _frame(rows, WORD_COLUMNS)
    df["is_pause"] = df["word"].str.lower().isin(PAUSE_LABELS)
    return df


def _textgrid_words(path: Path, tier: Optional[str] = None) -> pd.DataFrame:
    intervals = read_textgrid_intervals(path, tier)
    words = intervals.loc[~intervals["is_pause"], WORD_COLUMNS].reset_index(drop=True)
    words.attrs["n_pauses"] = int(intervals["is_pause"].sum())
    words.attrs["n_intervals"] = int(len(intervals))
    return words


# ------------------------------------------------------------------------------ TSV sources
def _read_table(path: Path) -> pd.DataFrame:
    text = _read_text(path)
    first = text.split("\n", 1)[0]
    sep = "\t" if "\t" in first else ("," if "," in first else r"\s+")
    from io import StringIO

    try:
        table = pd.read_csv(StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                            engine="python" if sep == r"\s+" else "c")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path.name}: expected a table with a header row, found unreadable text ({exc})") from exc
    table.columns = [str(c).strip() for c in table.columns]
    return table


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _find(columns, *names) -> Optional[str]:
    lower = {c.lower(): c for c in columns}
    for name in names:
        if name in lower:
            return lower[name]
    return None


def _numbers(table: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(table[col].str.strip().replace({"": "nan", "n/a": "nan"}), errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy() & ~table[col].str.strip().str.lower().isin(["", "nan", "n/a", "na"]).to_numpy())
    if len(bad):
        raise DataError(
            f"{path.name} line {bad[0] + 2}: expected a number in column {col!r}, found "
            f"{table[col].iloc[bad[0]]!r}"
        )
    return values.to_numpy(float)


def _list_cell(cell: str, path: Path, line_no: int, col: str) -> list:
    cell = (cell or "").strip()
    if not cell or cell.lower() in ("nan", "none"):
        return []
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        raise DataError(
            f"{path.name} line {line_no}: expected a list like ['a', 'b'] or [1.2, 1.5] in "
            f"column {col!r}, found {cell[:60]!r}"
        ) from None
    if isinstance(value, (int, float, str)):
        value = [value]
    return list(value)


def _is_algonauts(columns) -> bool:
    return any(c in columns for c in ALGONAUTS_COLUMNS)


def read_algonauts_transcript(path, tr_s: float = ALGONAUTS_TR_S) -> pd.DataFrame:
    """Read an Algonauts 2025 per-TR transcript into words.

    Onsets in these files are seconds from the start of the movie segment. (If a file's
    onsets are instead relative to their TR chunk -- every onset below ``tr_s`` while
    later chunks exist -- the chunk start ``row * tr_s`` is added.)

    Returns
    -------
    DataFrame[onset_s, duration_s, word, tr]
        ``tr`` is the file row (TR chunk) each word came from; ``attrs["n_trs"]`` is the
        number of rows in the file. :func:`read_words` drops the ``tr`` column.
    """
    path = Path(path)
    table = _read_table(path)
    missing = [c for c in ALGONAUTS_COLUMNS[1:] if c not in table.columns]
    if missing:
        raise DataError(
            f"{path.name}: expected Algonauts transcript columns {', '.join(ALGONAUTS_COLUMNS)}, "
            f"found {', '.join(table.columns)} (missing {', '.join(missing)})"
        )
    words, onsets, durations, trs, lines = [], [], [], [], []
    for row, rec in enumerate(table.itertuples(index=False)):
        line_no = row + 2
        w = _list_cell(getattr(rec, "words_per_tr"), path, line_no, "words_per_tr")
        o = _list_cell(getattr(rec, "onsets_per_tr"), path, line_no, "onsets_per_tr")
        d = _list_cell(getattr(rec, "durations_per_tr"), path, line_no, "durations_per_tr")
        if not (len(w) == len(o) == len(d)):
            raise DataError(
                f"{path.name} line {line_no}: expected as many onsets and durations as words, "
                f"found {len(w)} words, {len(o)} onsets, {len(d)} durations"
            )
        words += [str(x) for x in w]
        onsets += [float(x) if x is not None else np.nan for x in o]
        durations += [float(x) if x is not None else np.nan for x in d]
        trs += [row] * len(w)
        lines += [line_no] * len(w)
    df = pd.DataFrame({"onset_s": np.asarray(onsets, float), "duration_s": np.asarray(durations, float),
                       "word": pd.Series(words, dtype=object), "tr": np.asarray(trs, int)})
    _check_times(df, path, lines)
    tr_rows = df["tr"].to_numpy()
    if len(df) and tr_rows.max() >= 2 and np.all(df["onset_s"].to_numpy() < tr_s + 1e-6):
        df["onset_s"] = df["onset_s"] + tr_rows * tr_s
    df = df.sort_values("onset_s", kind="stable").reset_index(drop=True)
    df.attrs["n_trs"] = int(len(table))
    return df


def _read_word_or_cue_table(path: Path) -> Tuple[str, pd.DataFrame]:
    table = _read_table(path)
    cols = list(table.columns)
    if _is_algonauts(cols):
        return "words", read_algonauts_transcript(path)
    onset = _find(cols, "onset_s", "onset", "start_s", "start", "onsets")
    duration = _find(cols, "duration_s", "duration", "durations")
    stop = _find(cols, "stop_s", "end_s", "offset_s", "stop", "end", "offset")
    word = _find(cols, "word", "words", "token")
    text = _find(cols, "text", "sentence", "cue", "transcript")
    label = word or text
    if onset is None or label is None or (duration is None and stop is None):
        raise DataError(
            f"{path.name}: expected columns onset, duration, word (word timings), or text, onset, "
            f"duration (cues), or {', '.join(ALGONAUTS_COLUMNS)} (Algonauts transcript); "
            f"found {_shorten(', '.join(cols)) or 'no columns'}"
        )
    onsets = _numbers(table, onset, path)
    durations = _numbers(table, duration, path) if duration else _numbers(table, stop, path) - onsets
    df = pd.DataFrame({"onset_s": onsets, "duration_s": durations,
                       "label": table[label].astype(str).str.strip()})
    _check_times(df, path, list(range(2, len(df) + 2)))
    rows = list(df.itertuples(index=False, name=None))
    if word is not None:
        return "words", _frame(rows, WORD_COLUMNS)
    return "cues", _frame(rows, CUE_COLUMNS)


# ------------------------------------------------------------------------------ public API
def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".srt":
        return "srt"
    if suffix in (".vtt", ".webvtt"):
        return "vtt"
    if suffix == ".textgrid":
        return "textgrid"
    if suffix in (".tsv", ".csv", ".txt", ".tab"):
        return "table"
    raise DataError(
        f"{path.name}: expected a subtitle or word-timing file (.srt, .vtt, .TextGrid, .tsv, "
        f".csv, .txt), found extension {suffix or '(none)'!r}"
    )


def _cues_to_words(cues: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for onset, duration, text in cues[CUE_COLUMNS].itertuples(index=False):
        rows += spread_words(float(onset), float(duration), str(text))
    return _frame(rows, WORD_COLUMNS)


def read_words(path, tier: Optional[str] = None) -> pd.DataFrame:
    """Read the spoken words of an episode, one row per word.

    Parameters
    ----------
    path : str or Path
        .srt, .vtt, .TextGrid, Algonauts transcript TSV, word TSV or cue TSV.
    tier : str, optional
        TextGrid tier to use (default: the tier named like "word").

    Returns
    -------
    DataFrame[onset_s, duration_s, word]
        Sorted by onset, seconds from episode start. Words from subtitle cues are timed
        by spreading each cue over its words (see the module notes). For TextGrids,
        ``attrs["n_pauses"]`` counts the pause intervals left out.

    Raises
    ------
    DataError
        Missing file, unknown format, malformed timestamps, missing columns, NaN onsets.
    """
    path = Path(path)
    kind = _kind(path)
    if kind == "srt":
        return _cues_to_words(read_srt(path))
    if kind == "vtt":
        return _cues_to_words(read_vtt(path))
    if kind == "textgrid":
        return _textgrid_words(path, tier)
    what, df = _read_word_or_cue_table(path)
    if what == "cues":
        return _cues_to_words(df)
    out = df[WORD_COLUMNS].copy()
    out.attrs.update(df.attrs)
    return out


def read_cues(path, tier: Optional[str] = None, max_gap_s: float = 0.5,
              max_words: int = 20) -> pd.DataFrame:
    """Read subtitle-like cues: what a viewer reads (or hears) at each moment.

    Parameters
    ----------
    path : str or Path
        Any source :func:`read_words` reads.
    tier : str, optional
        TextGrid tier to use.
    max_gap_s, max_words :
        Sentence grouping for word-level sources (see :func:`group_words`).

    Returns
    -------
    DataFrame[onset_s, duration_s, text]
        Subtitle cues as written; word-level sources grouped into sentences.
    """
    path = Path(path)
    kind = _kind(path)
    if kind == "srt":
        return read_srt(path)
    if kind == "vtt":
        return read_vtt(path)
    if kind == "textgrid":
        return group_words(_textgrid_words(path, tier), max_gap_s, max_words)
    what, df = _read_word_or_cue_table(path)
    if what == "cues":
        return df
    return group_words(df, max_gap_s, max_words)


def words_in_window(words: pd.DataFrame, start_s: float, stop_s: float,
                    mode: str = "onset") -> pd.DataFrame:
    """Words of a time window ``[start_s, stop_s)``.

    Parameters
    ----------
    words : DataFrame[onset_s, duration_s, word]
    start_s, stop_s : float
    mode : {"onset", "overlap"}
        "onset": words whose onset lies in the window (each word counted in exactly one
        of adjacent windows, what word-rate features need); "overlap": words heard at any
        moment of the window.

    Returns
    -------
    DataFrame, a slice of ``words`` (same columns).
    """
    onsets = words["onset_s"].to_numpy(float)
    if mode == "onset":
        keep = (onsets >= start_s) & (onsets < stop_s)
    elif mode == "overlap":
        ends = onsets + words["duration_s"].to_numpy(float)
        keep = (onsets < stop_s) & ((ends > start_s) | ((ends == onsets) & (onsets >= start_s)))
    else:
        raise ValueError(f"mode: expected 'onset' or 'overlap', found {mode!r}")
    return words.loc[keep]


def cue_at(cues: pd.DataFrame, t_s: float) -> Optional[pd.Series]:
    """The cue on screen at ``t_s`` (``onset_s <= t_s < onset_s + duration_s``), or None.

    Where cues overlap, the one that started last is returned.
    """
    onsets = cues["onset_s"].to_numpy(float)
    ends = onsets + cues["duration_s"].to_numpy(float)
    hits = np.flatnonzero((onsets <= t_s) & (t_s < ends))
    if not len(hits):
        return None
    return cues.iloc[int(hits[np.argmax(onsets[hits])])]
