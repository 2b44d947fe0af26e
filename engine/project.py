"""The project file: what was loaded, how runs pair with episodes, which results exist.

A project is a JSON file (``*.alignscope.json``), schema-versioned, whose paths are
relative to the file's folder so a project folder can move. ``Project.load(p).save(q)``
round-trips exactly. A file written by a newer schema is refused with a clear message.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

from .atomic import write_text_atomic
from .errors import DataError, SchemaError

SCHEMA_VERSION = 1
PROJECT_SUFFIX = ".alignscope.json"


@dataclass
class Episode:
    """A stimulus: one video (with its audio track) and its text."""

    name: str
    video: Optional[str] = None        # relative path
    audio: Optional[str] = None        # separate audio file, when the video has none
    subtitles: Optional[str] = None    # .srt / .vtt
    words: Optional[str] = None        # word timings (TSV, TextGrid, Algonauts transcript)
    events: Optional[str] = None       # BIDS events TSV


@dataclass
class RunRef:
    """An fMRI run recorded while an episode was watched."""

    name: str
    path: str                          # relative path to the data file
    episode: str                       # Episode.name it pairs with
    subject: str = "sub-01"
    space: str = "fsaverage5"          # fsaverage5 | fsLR32k | parcels | volume | ...
    tr_s: float = 1.49
    onset_s: float = 0.0               # episode time of the first kept volume
    dropped_volumes: int = 0
    dataset: Optional[str] = None      # HDF5 dataset name, CIFTI map, ...
    atlas: Optional[str] = None        # for parcel tables: Atlas name
    confounds: Optional[str] = None    # fMRIPrep confounds TSV (relative path)
    mask: Optional[str] = None         # brain mask for volumetric runs (relative path)


@dataclass
class AtlasRef:
    name: str
    path: str
    space: str = "fsaverage5"


def _type_name(value) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _check_field(where: str, value, kind: str) -> None:
    """Raise SchemaError when ``value`` is not of ``kind`` (str, ostr, float, int, list, dict)."""
    import math

    ok = {"str": isinstance(value, str),
          "ostr": value is None or isinstance(value, str),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(float(value)),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "list": isinstance(value, list), "dict": isinstance(value, dict)}[kind]
    words = {"str": "text", "ostr": "text or null", "float": "a finite number", "int": "an integer",
             "list": "a list", "dict": "an object"}[kind]
    if not ok:
        raise SchemaError(f"project file: {where}: expected {words}, found {_type_name(value)}")


_FIELD_KINDS = {
    Episode: {"name": "str", "video": "ostr", "audio": "ostr", "subtitles": "ostr", "words": "ostr",
              "events": "ostr"},
    RunRef: {"name": "str", "path": "str", "episode": "str", "subject": "str", "space": "str", "tr_s": "float",
             "onset_s": "float", "dropped_volumes": "int", "dataset": "ostr", "atlas": "ostr",
             "confounds": "ostr", "mask": "ostr"},
    AtlasRef: {"name": "str", "path": "str", "space": "str"},
}


def _check_types(d: Dict[str, Any]) -> None:
    """Every field of a project document of its documented type (SchemaError naming field, expected, found)."""
    _check_field("name", d.get("name", "untitled"), "str")
    for key, cls in (("episodes", Episode), ("runs", RunRef), ("atlases", AtlasRef)):
        items = d.get(key, [])
        _check_field(key, items, "list")
        for i, item in enumerate(items):
            _check_field(f"{key}[{i}]", item, "dict")
            label = f"{key}[{i}]" + (f" ({item['name']!r})" if isinstance(item.get("name"), str) else "")
            for fname, kind in _FIELD_KINDS[cls].items():
                if fname in item:
                    _check_field(f"{label}.{fname}", item[fname], kind)
            if cls is RunRef:
                if "tr_s" in item and item["tr_s"] <= 0:
                    raise SchemaError(f"project file: {label}.tr_s: expected a positive number of seconds, "
                                      f"found {item['tr_s']!r}")
                if "dropped_volumes" in item and item["dropped_volumes"] < 0:
                    raise SchemaError(f"project file: {label}.dropped_volumes: expected an integer >= 0, "
                                      f"found {item['dropped_volumes']!r}")
    for key in ("preprocessing", "features", "results", "extra"):
        _check_field(key, d.get(key, {}), "dict")
    for k, v in d.get("results", {}).items():
        _check_field(f"results[{k!r}]", v, "str")


@dataclass
class Project:
    """Everything AlignScope knows about one study."""

    name: str = "untitled"
    episodes: List[Episode] = field(default_factory=list)
    runs: List[RunRef] = field(default_factory=list)
    atlases: List[AtlasRef] = field(default_factory=list)
    preprocessing: Dict[str, Any] = field(default_factory=dict)
    features: Dict[str, Any] = field(default_factory=dict)   # feature-space name -> spec
    results: Dict[str, str] = field(default_factory=dict)    # result name -> relative path
    extra: Dict[str, Any] = field(default_factory=dict)
    root: Optional[Path] = field(default=None, compare=False, repr=False)

    # ---- lookup -------------------------------------------------------------------
    def episode(self, name: str) -> Episode:
        for e in self.episodes:
            if e.name == name:
                return e
        raise DataError(f"episode: expected one of {[e.name for e in self.episodes]}, found {name!r}")

    def runs_for(self, episode: str) -> List[RunRef]:
        return [r for r in self.runs if r.episode == episode]

    def path(self, relative: Optional[str]) -> Optional[Path]:
        """Absolute path of a project-relative path (None stays None)."""
        if relative is None:
            return None
        p = Path(relative)
        if p.is_absolute() or self.root is None:
            return p
        return (self.root / p).resolve()

    def relative(self, path) -> str:
        """A path as stored in the project file: relative to the project folder (POSIX separators)
        when it lies inside it (or when no folder is known yet, unchanged)."""
        p = Path(path)
        if self.root is None or not p.is_absolute():
            return p.as_posix()
        try:
            return p.resolve().relative_to(Path(self.root).resolve()).as_posix()
        except ValueError:
            return os.path.relpath(p.resolve(), Path(self.root).resolve()).replace(os.sep, "/")

    # ---- (de)serialisation --------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        d = {"schema_version": SCHEMA_VERSION, "application": "AlignScope"}
        for f in fields(self):
            if f.name == "root":
                continue
            v = getattr(self, f.name)
            if isinstance(v, list):
                v = [asdict(x) for x in v]
            d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any], root: Optional[Path] = None) -> "Project":
        version = d.get("schema_version")
        if not isinstance(version, int):
            raise SchemaError(f"project file: expected an integer 'schema_version', found {version!r}")
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"project file: written by a newer AlignScope (schema {version}); this version reads "
                f"schema <= {SCHEMA_VERSION}. Update AlignScope to open it.")
        _check_types(d)
        try:
            return cls(
                name=d.get("name", "untitled"),
                episodes=[Episode(**e) for e in d.get("episodes", [])],
                runs=[RunRef(**r) for r in d.get("runs", [])],
                atlases=[AtlasRef(**a) for a in d.get("atlases", [])],
                preprocessing=dict(d.get("preprocessing", {})),
                features=dict(d.get("features", {})),
                results=dict(d.get("results", {})),
                extra=dict(d.get("extra", {})),
                root=root,
            )
        except TypeError as exc:
            raise SchemaError(f"project file: unexpected field ({exc})") from None

    def save(self, path) -> Path:
        """Write atomically (temp file + rename) so a crash never leaves half a project."""
        path = Path(path)
        if path.is_dir():
            path = path / f"{self.name}{PROJECT_SUFFIX}"
        path.parent.mkdir(parents=True, exist_ok=True)
        new_root = path.parent.resolve()
        if self.root is not None and Path(self.root).resolve() != new_root:
            self._rebase(new_root)   # saved elsewhere: relative paths must still reach the same files
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"
        write_text_atomic(path, text)
        self.root = new_root
        return path

    # fields holding project-relative paths
    _PATH_FIELDS = {Episode: ("video", "audio", "subtitles", "words", "events"),
                    RunRef: ("path", "confounds", "mask"), AtlasRef: ("path",)}

    def _rebase(self, new_root: Path) -> None:
        """Rewrite relative paths so they name the same files from ``new_root``."""
        old_root = Path(self.root).resolve()

        def move(rel):
            if rel is None or ":" in rel.split("/")[0] or Path(rel).is_absolute():
                return rel            # None, "builtin:..." names and absolute paths stay as they are
            return os.path.relpath(old_root / rel, new_root).replace(os.sep, "/")

        for items in (self.episodes, self.runs, self.atlases):
            for item in items:
                for name in self._PATH_FIELDS[type(item)]:
                    setattr(item, name, move(getattr(item, name)))
        self.results = {k: move(v) for k, v in self.results.items()}
        self.root = new_root

    @classmethod
    def load(cls, path) -> "Project":
        path = Path(path)
        if path.is_dir():
            found = sorted(path.glob(f"*{PROJECT_SUFFIX}"))
            if not found:
                raise DataError(f"project folder {path}: expected a *{PROJECT_SUFFIX} file, found none")
            path = found[0]
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"project file: expected {path} to exist, found nothing there") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"project file {path}: expected JSON, found a syntax error ({exc})") from None
        if not isinstance(d, dict):
            raise DataError(f"project file {path}: expected a JSON object, found {type(d).__name__}")
        return cls.from_dict(d, root=path.parent.resolve())


# Opening data folders (Algonauts 2025, BIDS / fMRIPrep) lives in ``engine.importers``, the
# layer above this file model and the folder readers: ``engine.importers.load_project`` /
# ``detect_layout`` / ``ensure_project_file``.
