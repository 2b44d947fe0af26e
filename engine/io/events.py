"""BIDS events files and boxcar regressors.

A BIDS ``*_events.tsv`` has columns ``onset`` and ``duration`` (seconds from the start
of the run's first volume), usually ``trial_type``, and any extra columns; ``n/a``
marks a missing value. :func:`read_events` normalises it to
``DataFrame[onset_s, duration_s, trial_type, <extra columns>]`` and
:func:`events_to_regressors` turns it into one column per trial type holding the
fraction of each TR that the events of that type cover.
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError

EVENT_COLUMNS = ["onset_s", "duration_s", "trial_type"]
_MISSING = ["n/a", "N/A", "NA", "nan", "NaN", ""]


def read_events(path, default_trial_type: str = "event") -> pd.DataFrame:
    """Read a BIDS events TSV.

    Parameters
    ----------
    path : str or Path
        Tab-separated file with a header row containing ``onset`` and ``duration``.
    default_trial_type : str
        Trial type given to rows (or files) without one.

    Returns
    -------
    DataFrame[onset_s, duration_s, trial_type, ...extra columns]
        Sorted by onset. ``n/a`` durations become 0 (an impulse), as in BIDS.
        Extra columns keep their names; numeric ones are converted to numbers.

    Raises
    ------
    DataError
        Missing file, missing ``onset``/``duration`` columns, NaN or non-numeric
        onsets (the message names the line), negative durations.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"events file: expected an existing file, found no file at {path}")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if not text.strip():
        raise DataError(f"{path.name}: expected a header row with onset, duration, found an empty file")
    first = text.split("\n", 1)[0]
    sep = "\t" if "\t" in first else ("," if "," in first else r"\s+")
    try:
        table = pd.read_csv(StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                            engine="python" if sep == r"\s+" else "c")
    except pd.errors.ParserError as exc:
        raise DataError(f"{path.name}: expected a tab-separated table, found unreadable rows ({exc})") from exc
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("onset", "duration") if c not in table.columns]
    if missing:
        raise DataError(
            f"{path.name}: expected BIDS events columns onset, duration[, trial_type, ...], "
            f"found {', '.join(table.columns) or 'no columns'} (missing {', '.join(missing)})"
        )
    lines = np.arange(len(table)) + 2  # header is line 1

    def numbers(col: str) -> np.ndarray:
        raw = table[col].str.strip()
        values = pd.to_numeric(raw.where(~raw.isin(_MISSING), "nan"), errors="coerce").to_numpy(float)
        not_number = np.flatnonzero(np.isnan(values) & ~raw.isin(_MISSING).to_numpy())
        if len(not_number):
            k = not_number[0]
            raise DataError(f"{path.name} line {lines[k]}: expected a number in column {col!r}, "
                            f"found {table[col].iloc[k]!r}")
        return values

    onsets = numbers("onset")
    bad = np.flatnonzero(~np.isfinite(onsets))
    if len(bad):
        listed = ", ".join(str(lines[k]) for k in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise DataError(f"{path.name}: expected a number of seconds in every onset, found "
                        f"{len(bad)} n/a or NaN onset(s) at line(s) {listed}")
    durations = numbers("duration")
    durations = np.where(np.isnan(durations), 0.0, durations)
    bad = np.flatnonzero(durations < 0)
    if len(bad):
        raise DataError(f"{path.name} line {lines[bad[0]]}: expected a duration >= 0 s, "
                        f"found {durations[bad[0]]}")
    out = pd.DataFrame({"onset_s": onsets, "duration_s": durations})
    if "trial_type" in table.columns:
        tt = table["trial_type"].str.strip()
        out["trial_type"] = tt.where(~tt.isin(_MISSING), default_trial_type).astype(object)
    else:
        out["trial_type"] = pd.Series([default_trial_type] * len(table), dtype=object)
    for col in table.columns:
        if col in ("onset", "duration", "trial_type"):
            continue
        raw = table[col].str.strip()
        as_num = pd.to_numeric(raw.where(~raw.isin(_MISSING), "nan"), errors="coerce")
        is_num = as_num.notna() | raw.isin(_MISSING)
        name = col if col not in out.columns else f"{col}_extra"
        out[name] = as_num.to_numpy(float) if bool(is_num.all()) else pd.Series(
            [None if v in _MISSING else v for v in raw], dtype=object)
    out = out.sort_values("onset_s", kind="stable").reset_index(drop=True)
    return out


def events_to_regressors(events: pd.DataFrame, n_trs: int, tr_s: float, start_s: float = 0.0,
                         trial_types: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Boxcar regressors: fraction of each TR covered by each trial type's events.

    TR ``k`` spans ``[start_s + k * tr_s, start_s + (k + 1) * tr_s)`` (the convention of
    :mod:`engine.timeline`). Overlapping events of one type count once (their union),
    so every value lies in [0, 1]. An event of duration 0 (an impulse) puts 1 in the TR
    that contains its onset.

    Parameters
    ----------
    events : DataFrame[onset_s, duration_s, trial_type]
        As returned by :func:`read_events`.
    n_trs : int
        Number of TRs of the run.
    tr_s : float
        Repetition time in seconds.
    start_s : float
        Event time at which TR 0 starts.
    trial_types : sequence of str, optional
        Columns to make, in this order (types absent from ``events`` give zeros).
        Default: the sorted trial types present.

    Returns
    -------
    DataFrame, shape (n_trs, n_trial_types), float32
        One column per trial type; ``.to_numpy()`` is a feature matrix (n_trs, k).
    """
    if tr_s <= 0:
        raise ConfigError(f"TR: expected a positive number of seconds, found {tr_s}")
    if n_trs < 0:
        raise ConfigError(f"TR count: expected >= 0, found {n_trs}")
    for col in EVENT_COLUMNS:
        if col not in events.columns:
            raise DataError(f"events: expected columns {', '.join(EVENT_COLUMNS)}, found "
                            f"{', '.join(map(str, events.columns))}")
    if trial_types is None:
        trial_types = sorted(events["trial_type"].astype(str).unique())
    edges_s = start_s + tr_s * np.arange(n_trs + 1)  # n_trs + 1
    columns = {}
    for tt in trial_types:
        sel = events[events["trial_type"].astype(str) == str(tt)]
        onsets = sel["onset_s"].to_numpy(float)
        durations = sel["duration_s"].to_numpy(float)
        values = np.zeros(n_trs, dtype=np.float64)
        spans = durations > 0
        if spans.any():
            values += _union_coverage(onsets[spans], onsets[spans] + durations[spans], edges_s) / tr_s
        impulses = onsets[~spans]
        if len(impulses):
            k = np.floor((impulses - start_s) / tr_s).astype(int)
            k = k[(k >= 0) & (k < n_trs)]
            values[k] = 1.0
        columns[str(tt)] = np.clip(values, 0.0, 1.0).astype(np.float32)
    return pd.DataFrame(columns, index=pd.RangeIndex(n_trs, name="tr"), dtype=np.float32)


def _union_coverage(starts: np.ndarray, stops: np.ndarray, edges_s: np.ndarray) -> np.ndarray:
    """Seconds of each bin ``[edges_s[k], edges_s[k+1])`` covered by the union of intervals."""
    order = np.argsort(starts)
    starts, stops = starts[order], stops[order]
    merged_a, merged_b = [starts[0]], [stops[0]]
    for a, b in zip(starts[1:], stops[1:]):
        if a <= merged_b[-1]:
            merged_b[-1] = max(merged_b[-1], b)
        else:
            merged_a.append(a)
            merged_b.append(b)
    a = np.asarray(merged_a)
    b = np.asarray(merged_b)
    # Covered time up to t: C(t) = sum over intervals of clip(t - a, 0, b - a); piecewise
    # linear, so its values at the bin edges give each bin's coverage by differencing.
    covered_at_edges = np.clip(edges_s[:, None] - a[None, :], 0.0, (b - a)[None, :]).sum(axis=1)
    return np.diff(covered_at_edges)
