"""The application state: one pure-Python model that every view observes.

Like napari's ``Dims`` (``napari/components/dims.py``), this module imports no Qt. A
view subscribes to the events it cares about::

    state.events.time.connect(view.on_time)

and the callback receives an :class:`Event` with ``.type``, ``.value`` and ``.old``.
Setting a value that equals the current one emits nothing, so a view that writes back
the value it already shows does not start a loop.

The current time (seconds into the episode) is the ONE source of truth for "where we
are"; frame, TR and delayed feature row are derived from it through
:class:`engine.timeline.Timeline` (``state.frame_index``, ``state.tr_index``), never
recomputed ad hoc by a view.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional

from .errors import ConfigError
from .timeline import Timeline

__all__ = ["Event", "EventEmitter", "EmitterGroup", "Target", "AppState", "LAYERS"]

# Which map the cortex shows: the encoding score, or the measured / predicted response at
# the current TR.
LAYERS = ("score", "measured", "predicted")


@dataclass(frozen=True)
class Event:
    """What changed: ``type`` (the event's name), the new ``value`` and the ``old`` one."""

    type: str
    value: Any
    old: Any = None


class EventEmitter:
    """A list of callbacks called with one :class:`Event` each time a value changes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: List[Callable[[Event], Any]] = []
        self._blocked = 0

    def connect(self, callback: Callable[[Event], Any]) -> Callable[[Event], Any]:
        """Call ``callback(event)`` on every emission; returns the callback (usable as a decorator)."""
        if not callable(callback):
            raise ConfigError(f"event {self.name}: expected a callable, found {type(callback).__name__}")
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Optional[Callable[[Event], Any]] = None) -> None:
        """Forget ``callback`` (or every callback when None)."""
        if callback is None:
            self._callbacks.clear()
        elif callback in self._callbacks:
            self._callbacks.remove(callback)

    @property
    def callbacks(self) -> List[Callable[[Event], Any]]:
        return list(self._callbacks)

    @contextlib.contextmanager
    def blocker(self) -> Iterator[None]:
        """Emit nothing inside the ``with`` block."""
        self._blocked += 1
        try:
            yield
        finally:
            self._blocked -= 1

    def emit(self, value: Any, old: Any = None) -> None:
        """Call every callback; one failing callback does not starve the others.

        The first exception raised by a callback is re-raised after all were called, so
        a broken view is reported rather than silently leaving the others stale.
        """
        if self._blocked:
            return
        event = Event(self.name, value, old)
        first_error: Optional[BaseException] = None
        for cb in list(self._callbacks):
            try:
                cb(event)
            except Exception as exc:  # noqa: BLE001 - re-raised below
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error


class EmitterGroup:
    """Named emitters as attributes: ``events.time``, ``events.target``..."""

    def __init__(self, *names: str) -> None:
        self._emitters: Dict[str, EventEmitter] = {n: EventEmitter(n) for n in names}

    def __getattr__(self, name: str) -> EventEmitter:
        try:
            return self.__dict__["_emitters"][name]
        except KeyError:
            raise AttributeError(
                f"event: expected one of {sorted(self.__dict__.get('_emitters', {}))}, found {name!r}"
            ) from None

    def names(self) -> List[str]:
        return list(self._emitters)

    def disconnect_all(self) -> None:
        for e in self._emitters.values():
            e.disconnect()


@dataclass(frozen=True)
class Target:
    """What the user selected on the cortex: one vertex, or a region of an atlas.

    Use :meth:`vertex_target` / :meth:`region_target` to build one.
    """

    kind: str                       # "vertex" | "region"
    vertex: Optional[int] = None    # index into the n_vertices of the space (both hemispheres)
    region: Optional[str] = None    # parcel name in ``atlas``
    atlas: Optional[str] = None

    def __post_init__(self):
        if self.kind == "vertex":
            if self.vertex is None or int(self.vertex) < 0:
                raise ConfigError(f"vertex target: expected a vertex index >= 0, found {self.vertex!r}")
            object.__setattr__(self, "vertex", int(self.vertex))
        elif self.kind == "region":
            if not self.region:
                raise ConfigError(f"region target: expected a region name, found {self.region!r}")
        else:
            raise ConfigError(f"target kind: expected 'vertex' or 'region', found {self.kind!r}")

    @classmethod
    def vertex_target(cls, index: int) -> "Target":
        return cls("vertex", vertex=int(index))

    @classmethod
    def region_target(cls, name: str, atlas: Optional[str] = None) -> "Target":
        return cls("region", region=str(name), atlas=atlas)

    @property
    def label(self) -> str:
        if self.kind == "vertex":
            return f"vertex {self.vertex}"
        return f"{self.region}" + (f" ({self.atlas})" if self.atlas else "")


class AppState:
    """Where the user is and what they look at; no Qt, no I/O.

    Attributes (each with an event of the same name in ``self.events``):

    ``time`` (float, seconds into the episode), ``playing`` (bool), ``speed`` (float,
    playback rate), ``target`` (:class:`Target` or None), ``run`` (run name or None),
    ``result`` (result name or None), ``layer`` (one of :data:`LAYERS`), ``timeline``
    (:class:`Timeline` or None: the episode/run clock that derives frame and TR).
    """

    EVENT_NAMES = ("time", "playing", "speed", "target", "run", "result", "layer", "timeline")

    def __init__(self, timeline: Optional[Timeline] = None) -> None:
        self.events = EmitterGroup(*self.EVENT_NAMES)
        self._time_s = 0.0
        self._playing = False
        self._speed = 1.0
        self._target: Optional[Target] = None
        self._run: Optional[str] = None
        self._result: Optional[str] = None
        self._layer = "score"
        self._timeline: Optional[Timeline] = timeline

    # ---- generic setter ---------------------------------------------------------------
    def _set(self, name: str, attr: str, value: Any) -> None:
        old = getattr(self, attr)
        if value == old:
            return  # a view writing back what it shows must not echo
        setattr(self, attr, value)
        getattr(self.events, name).emit(value, old)

    # ---- time: the one source of truth ---------------------------------------------------
    @property
    def time(self) -> float:
        """Current time in seconds into the episode."""
        return self._time_s

    @time.setter
    def time(self, t_s: float) -> None:
        t_s = float(t_s)
        if not math.isfinite(t_s):
            raise ConfigError(f"time: expected a finite number of seconds, found {t_s}")
        if self._timeline is not None:
            t_s = self._timeline.clamp(t_s)
        else:
            t_s = max(t_s, 0.0)
        self._set("time", "_time_s", t_s)

    # ``current_time`` reads better at call sites that mix several clocks.
    current_time = time

    @property
    def timeline(self) -> Optional[Timeline]:
        return self._timeline

    @timeline.setter
    def timeline(self, timeline: Optional[Timeline]) -> None:
        if timeline is self._timeline:
            return
        old = self._timeline
        self._timeline = timeline
        self.events.timeline.emit(timeline, old)
        if timeline is not None:
            self.time = timeline.clamp(self._time_s)

    @property
    def frame_index(self) -> int:
        """Video frame on screen at the current time (0 without a timeline)."""
        return self._timeline.frame_index(self._time_s) if self._timeline is not None else 0

    @property
    def tr_index(self) -> int:
        """TR of the current run being acquired at the current time (0 without a timeline)."""
        return self._timeline.tr_index(self._time_s) if self._timeline is not None else 0

    def feature_row(self, delay_trs: int = 0) -> int:
        return self._timeline.feature_row(self._time_s, delay_trs) if self._timeline is not None else 0

    # ---- playback -----------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self._playing

    @playing.setter
    def playing(self, value: bool) -> None:
        self._set("playing", "_playing", bool(value))

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        value = float(value)
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"playback speed: expected a positive number, found {value}")
        self._set("speed", "_speed", value)

    # ---- selection ----------------------------------------------------------------------
    @property
    def target(self) -> Optional[Target]:
        return self._target

    @target.setter
    def target(self, value: Optional[Target]) -> None:
        if value is not None and not isinstance(value, Target):
            raise ConfigError(f"target: expected a Target or None, found {type(value).__name__}")
        self._set("target", "_target", value)

    selected_target = target

    def select_vertex(self, index: int) -> None:
        self.target = Target.vertex_target(index)

    def select_region(self, name: str, atlas: Optional[str] = None) -> None:
        self.target = Target.region_target(name, atlas)

    @property
    def run(self) -> Optional[str]:
        return self._run

    @run.setter
    def run(self, name: Optional[str]) -> None:
        self._set("run", "_run", None if name is None else str(name))

    current_run = run

    @property
    def result(self) -> Optional[str]:
        return self._result

    @result.setter
    def result(self, name: Optional[str]) -> None:
        self._set("result", "_result", None if name is None else str(name))

    current_result = result

    @property
    def layer(self) -> str:
        return self._layer

    @layer.setter
    def layer(self, name: str) -> None:
        if name not in LAYERS:
            raise ConfigError(f"layer: expected one of {list(LAYERS)}, found {name!r}")
        self._set("layer", "_layer", name)

    current_layer = layer

    def close(self) -> None:
        """Drop every subscriber (views being destroyed must not be called again)."""
        self.events.disconnect_all()
