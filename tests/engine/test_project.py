"""The project file: exact round trips, schema guard, relative paths that survive moves."""

import json
from pathlib import Path

import pytest

from engine.errors import DataError, SchemaError
from engine.project import SCHEMA_VERSION, AtlasRef, Episode, Project, RunRef


def _project() -> Project:
    return Project(
        name="friends",
        episodes=[Episode("friends_s01e01a", video="stimuli/a.mkv", words="stimuli/a.tsv"),
                  Episode("ünïcode ep", subtitles="subs/ep.srt")],
        runs=[RunRef("sub-01_ses-001_task-s01e01a", "fmri/sub-01.h5", "friends_s01e01a", subject="sub-01",
                     space="parcels", tr_s=1.49, onset_s=0.1 + 0.2, dataset="ses-001_task-s01e01a",
                     atlas="schaefer1000", confounds="fmri/c.tsv", mask=None),
              RunRef("sub-02_r", "fmri/sub-02.npy", "ünïcode ep", dropped_volumes=3)],
        atlases=[AtlasRef("schaefer400", "builtin:schaefer400"), AtlasRef("own", "atlases/lh.own.annot")],
        preprocessing={"detrend": 3, "high_pass_hz": 0.01, "standardize": True, "confounds": ["motion", "compcor"]},
        features={"clip:layer-6": {"model": "clip", "layer": 6, "pca": None}},
        results={"clip": "results/clip.h5"},
        extra={"missing_runs": [{"subject": "sub-05", "episode": "friends_s04e01a", "known": True}]},
    )


def test_round_trip_equal_objects_and_identical_bytes(tmp_path):
    p = _project()
    first = p.save(tmp_path / "a.alignscope.json")
    loaded = Project.load(first)
    assert loaded == p
    assert loaded.runs[0].onset_s == 0.1 + 0.2            # floats survive bit for bit
    second = loaded.save(tmp_path / "b.alignscope.json")
    assert first.read_bytes() == second.read_bytes()
    assert Project.load(second) == loaded
    assert Project.load(tmp_path / "b.alignscope.json").path("fmri/c.tsv") == (tmp_path / "fmri" / "c.tsv").resolve()


def test_newer_schema_refused_with_a_clear_message(tmp_path):
    d = _project().to_dict()
    d["schema_version"] = SCHEMA_VERSION + 1
    f = tmp_path / "new.alignscope.json"
    f.write_text(json.dumps(d))
    with pytest.raises(SchemaError, match=f"newer AlignScope \\(schema {SCHEMA_VERSION + 1}\\).*Update"):
        Project.load(f)
    d["schema_version"] = "1"
    f.write_text(json.dumps(d))
    with pytest.raises(SchemaError, match="integer 'schema_version'"):
        Project.load(f)


def test_broken_project_files(tmp_path):
    f = tmp_path / "x.alignscope.json"
    f.write_text('{"schema_version": 1, "runs": [')
    with pytest.raises(DataError, match="expected JSON"):
        Project.load(f)
    f.write_text('{"schema_version": 1, "runs": [{"name": "r", "path": "p", "episode": "e", "colour": 1}]}')
    with pytest.raises(SchemaError, match="unexpected field"):
        Project.load(f)
    f.write_text("[1, 2]")
    with pytest.raises(DataError, match="JSON object, found list"):
        Project.load(f)
    with pytest.raises(DataError, match="found nothing there"):
        Project.load(tmp_path / "none.alignscope.json")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(DataError, match="found none"):
        Project.load(tmp_path / "emptydir")


def test_paths_stay_relative_and_follow_a_save_elsewhere(tmp_path):
    data = tmp_path / "data"
    (data / "fmri").mkdir(parents=True)
    (data / "fmri" / "sub-01.h5").write_bytes(b"x")
    p = Project(name="p", root=data)
    p.runs.append(RunRef("r", p.relative(data / "fmri" / "sub-01.h5"), "e"))
    p.atlases.append(AtlasRef("s", "builtin:schaefer400"))
    assert p.runs[0].path == "fmri/sub-01.h5"
    saved = p.save(tmp_path / "projects" / "mine" / "p.alignscope.json")
    text = saved.read_text()
    assert str(tmp_path) not in text                          # nothing absolute written
    q = Project.load(saved)
    assert q.runs[0].path == "../../data/fmri/sub-01.h5"
    assert q.path(q.runs[0].path).read_bytes() == b"x"
    assert q.atlases[0].path == "builtin:schaefer400"
    # saving into a folder picks the project's name
    assert p.save(tmp_path / "projects").name == "p.alignscope.json"
    assert Project.load(tmp_path / "projects").path(p.runs[0].path).exists()


def test_lookup_errors_name_the_choices():
    p = _project()
    with pytest.raises(DataError, match="friends_s01e01a"):
        p.episode("s01e01a")
    assert [r.name for r in p.runs_for("ünïcode ep")] == ["sub-02_r"]


def test_atomic_save_leaves_no_temp_file_on_failure(tmp_path):
    p = _project()
    p.save(tmp_path / "ok.alignscope.json")
    p.extra["bad"] = object()                                  # not JSON-serialisable
    with pytest.raises(TypeError):
        p.save(tmp_path / "ok.alignscope.json")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["ok.alignscope.json"]
    assert Project.load(tmp_path / "ok.alignscope.json").name == "friends"
