"""`main.py qc`: exit codes, JSON, errors without traceback; and QC of the real Alice recordings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import main
from engine.encoding.noise_ceiling import isc_leave_one_out
from tests.engine.test_qc_engine import N_TRS, TR_S, _project, shared_study

ALICE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "alice_brennan2016" / "alice_data_shared"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return shared_study(tmp_path_factory)


def test_cli_project_clean_then_faulty(study, tmp_path, capsys):
    clean = _project(study, tmp_path / "clean", {"sub-01_run-1": study.runs[0], "sub-02_run-1": study.runs[1]})
    f = clean.save(tmp_path / "clean" / "qc.alignscope.json")
    assert main.main(["qc", str(f), "--no-sync"]) == 0
    out = capsys.readouterr().out
    assert "0 fail: passed" in out

    bad = study.runs[1].copy()
    bad[7] = bad[6]                                   # a duplicated volume
    faulty = _project(study, tmp_path / "faulty", {"sub-01_run-1": study.runs[0], "sub-02_run-1": bad})
    f = faulty.save(tmp_path / "faulty" / "qc.alignscope.json")
    html = tmp_path / "qc.html"
    assert main.main(["qc", str(tmp_path / "faulty"), "--json", "--no-sync", "--html", str(html)]) == 1
    js = json.loads(capsys.readouterr().out)
    assert js["failed"] is True
    dup = [c for c in js["checks"] if c["name"] == "duplicated_trs" and c["subject"] == "sub-02_run-1"]
    assert dup[0]["level"] == "fail" and dup[0]["details"]["duplicated"] == [7]
    assert "duplicated_trs" in html.read_text()
    assert main.main(["qc", str(f), "--only", "nope"]) == 2
    assert "expected episodes of" in capsys.readouterr().err


def test_cli_runs_and_episode(study, tmp_path, capsys):
    from tests.engine.test_qc_engine import write_table

    a = write_table(tmp_path / "sub-01_run-1.tsv", study.runs[0], study.names)
    shifted = np.vstack([study.runs[1][3:], study.runs[1][-3:]])
    b = write_table(tmp_path / "sub-02_run-1.tsv", shifted, study.names)
    rc = main.main(["qc", "--runs", str(a), str(b), "--episode", str(study.video), "--words", str(study.words),
                    "--tr", str(TR_S), "--json"])
    js = json.loads(capsys.readouterr().out)
    assert rc == 1
    sync = {c["subject"]: c for c in js["checks"] if c["name"] == "sync"}
    assert sync["sub-01_run-1"]["level"] == "pass"
    assert sync["sub-02_run-1"]["level"] == "fail"
    assert abs(sync["sub-02_run-1"]["details"]["best_lag_trs"] + 3) <= 1


def test_cli_errors_without_traceback(tmp_path, capsys):
    assert main.main(["qc", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "alignscope qc: error:" in err and "Traceback" not in err
    assert main.main(["qc"]) == 2
    assert "expected a PATH" in capsys.readouterr().err
    table = tmp_path / "s01-timecourses.txt"
    np.savetxt(table, np.random.default_rng(0).normal(100, 1, (N_TRS, 3)))
    assert main.main(["qc", "--runs", str(table)]) == 1      # no TR: the run is reported, not a traceback
    out = capsys.readouterr().out
    assert "FAIL  load" in out and "--tr" in out


def test_alice_6mm_tables_flag_s33_and_give_loso_isc(capsys):
    files = sorted((ALICE / "6mm").glob("s*-timecourses.txt"))
    if not files:
        pytest.skip(f"real data absent: expected Brennan 2016 time courses in {ALICE / '6mm'}")
    from engine.qc.run import qc_files

    rep = qc_files(files, tr_s=2.0)
    dead = [c for c in rep.checks if c.name == "dead_targets" and c.level == "fail"]
    assert [c.subject for c in dead] == ["s33-timecourses"]
    assert rep.failed
    rel = rep.find("reliability")[0]
    assert rel.details["subjects"] == [f.name.split("-")[0] for f in files if "s33" not in f.name]
    # the reliability view gives exactly the engine's leave-one-subject-out ISC (s33 left out)
    stack = np.stack([np.loadtxt(f) for f in files if "s33" not in f.name])
    expected = isc_leave_one_out(stack).mean(axis=0)
    np.testing.assert_allclose(rel.data["loso_mean"], expected, rtol=1e-6)
    np.testing.assert_allclose(rel.data["loso_mean"], [0.30, 0.19, 0.37, 0.27, 0.21, 0.13], atol=0.01)
    assert rel.details["ceiling_kind"].startswith("across subjects")
    # through the command, ROI names given: the reliability line names each ROI's LOSO ISC
    rois = ["LATL", "RATL", "LPTL", "LIPL", "LPreM", "LIFG"]
    assert main.main(["qc", "--runs", *map(str, files), "--tr", "2", "--names", *rois]) == 1
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if "reliability" in x][0]
    assert "leave-one-subject-out ISC " + " ".join(f"{r} {v:.2f}" for r, v in zip(rois, expected)) in line
    assert "FAIL  dead_targets     s33-timecourses" in out
