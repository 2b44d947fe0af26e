"""QC reports: plain text (the terminal), JSON (scripts) and an HTML fragment (study reports)."""

from __future__ import annotations

import html
import json
from typing import Any, Dict, List

from . import checks as C
from .checks import Check

MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}
COLOURS = {"pass": "#2e7d32", "warn": "#b26a00", "fail": "#c62828"}
CATEGORY_TITLES = {"run": "Runs", "episode": "Episodes", "sync": "Stimulus-brain sync",
                   "reliability": "Reliability"}


def _checks(report) -> List[Check]:
    return list(getattr(report, "checks", report))


def format_text(report, show_pass: bool = True) -> str:
    """One line per check, grouped by category, then a summary line."""
    checks = _checks(report)
    lines: List[str] = []
    source = getattr(report, "source", "")
    if source:
        lines.append(f"QC of {source}")
    for cat in C.CATEGORIES:
        items = [c for c in checks if c.category == cat and (show_pass or c.level != "pass")]
        if not items:
            continue
        lines.append(f"{CATEGORY_TITLES[cat]}:")
        for c in items:
            lines.append(f"  {MARK[c.level]}  {c.name:<16} {c.message}")
    s = C.summary(checks)
    verdict = "FAILED" if s["fail"] else ("passed with warnings" if s["warn"] else "passed")
    lines.append(f"{len(checks)} checks: {s['pass']} pass, {s['warn']} warn, {s['fail']} fail: {verdict}")
    return "\n".join(lines)


def to_json_dict(report) -> Dict[str, Any]:
    """JSON-ready dict: ``summary``, ``failed``, ``checks`` (each without its view arrays)."""
    if hasattr(report, "to_dict"):
        return C.to_jsonable(report.to_dict())
    checks = _checks(report)
    return C.to_jsonable({"summary": C.summary(checks), "failed": any(c.failed for c in checks),
                          "checks": [c.to_dict() for c in checks]})


def to_json(report, indent: int = 2) -> str:
    return json.dumps(to_json_dict(report), indent=indent, allow_nan=False)


def to_html(report, title: str = "Quality checks") -> str:
    """An HTML fragment (a ``<section>``; no ``<html>``/``<body>``) for study reports."""
    checks = _checks(report)
    s = C.summary(checks)
    esc = html.escape
    parts = [f'<section class="alignscope-qc">', f"<h2>{esc(title)}</h2>",
             f'<p class="qc-summary">{len(checks)} checks: '
             + ", ".join(f'<span style="color:{COLOURS[k]}">{s[k]} {k}</span>' for k in C.LEVELS) + "</p>"]
    for cat in C.CATEGORIES:
        items = [c for c in checks if c.category == cat]
        if not items:
            continue
        parts.append(f"<h3>{esc(CATEGORY_TITLES[cat])}</h3>")
        parts.append('<table class="qc-table"><thead><tr><th>level</th><th>check</th><th>about</th>'
                     "<th>finding</th></tr></thead><tbody>")
        for c in items:
            parts.append(f'<tr class="qc-{c.level}"><td style="color:{COLOURS[c.level]};font-weight:bold">'
                         f"{MARK[c.level]}</td><td>{esc(c.name)}</td><td>{esc(c.subject)}</td>"
                         f"<td>{esc(c.message)}</td></tr>")
        parts.append("</tbody></table>")
    parts.append("</section>")
    return "\n".join(parts)
