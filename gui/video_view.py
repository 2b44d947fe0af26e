"""The video pane: the frame on screen, play/pause, a time slider, time/frame/TR, the subtitle.

Playback follows the wall clock, as MNE's ``Brain`` does: each tick sets the time to
``start_time + elapsed_wall * speed``, so a slow frame is dropped rather than letting
the video drift behind the clock. Every displayed number is derived from the one time
value of the :class:`~engine.state.AppState` through its timeline.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QSizePolicy, QSlider, QStyle, QToolButton,
                               QVBoxLayout, QWidget)

from engine.state import AppState, Event

SPEEDS = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0)
TICK_MS = 15


def format_time(t_s: float) -> str:
    """``mm:ss.cc``."""
    t_s = max(float(t_s), 0.0)
    m, s = divmod(t_s, 60.0)
    return f"{int(m):02d}:{s:05.2f}"


class FrameCanvas(QWidget):
    """Paints one RGB frame scaled to fit, keeping its aspect ratio, on black."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.image: Optional[QImage] = None
        self.setMinimumSize(240, 135)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(560, 315)

    def set_rgb(self, rgb: Optional[np.ndarray]) -> None:
        if rgb is None:
            self.image = None
        else:
            rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
            h, w = rgb.shape[:2]
            self.image = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
        self.update()

    def image_rect(self) -> QRect:
        """Where the frame is drawn inside this widget."""
        if self.image is None or self.image.width() == 0:
            return QRect()
        W, H = self.width(), self.height()
        s = min(W / self.image.width(), H / self.image.height())
        w, h = int(self.image.width() * s), int(self.image.height() * s)
        return QRect((W - w) // 2, (H - h) // 2, w, h)

    def paintEvent(self, _e) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#000000"))
        if self.image is not None:
            p.setRenderHint(QPainter.SmoothPixmapTransform, True)
            p.drawImage(self.image_rect(), self.image)
        else:
            p.setPen(QColor("#8a929c"))
            p.drawText(self.rect(), Qt.AlignCenter, "No video in this project")
        p.end()


class VideoView(QWidget):
    """Frame display and playback controls bound to an :class:`AppState`."""

    def __init__(self, state: AppState, session=None, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.session = None
        self.shown_frame_index: Optional[int] = None
        self.shown_cue = ""
        self._anchor_time_s = 0.0
        self._anchor_wall_s = 0.0
        self._ticking = False
        self.dropped_frames = 0
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)

        title = QLabel("Episode")
        title.setObjectName("paneTitle")
        self.episode_label = QLabel("")
        self.episode_label.setObjectName("paneHint")
        self.canvas = FrameCanvas()
        self.subtitle = QLabel("")
        self.subtitle.setObjectName("subtitle")
        self.subtitle.setAlignment(Qt.AlignCenter)
        self.subtitle.setWordWrap(True)
        self.subtitle.setMinimumHeight(44)
        self.play_button = QToolButton()
        self.play_button.setCheckable(True)
        self.play_button.setIcon(self.style().standardIcon(QStyle.SP_MediaPlay))
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.toggled.connect(self._play_toggled)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setSingleStep(40)
        self.slider.setPageStep(1490)
        self.slider.setToolTip("Time in the episode")
        self.slider.valueChanged.connect(self._slider_moved)
        self.time_label = QLabel(format_time(0))
        self.time_label.setObjectName("timeLabel")
        self.position_label = QLabel("")
        self.position_label.setObjectName("timeLabel")
        self.speed_box = QComboBox()
        for s in SPEEDS:
            self.speed_box.addItem(f"{s:g}×", s)
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_box.setToolTip("Playback speed")
        self.speed_box.currentIndexChanged.connect(lambda i: setattr(self.state, "speed", SPEEDS[i]))
        # Labels that change every tick get a fixed width: a size change would re-lay out
        # (and repaint) the whole window, 3D pane included, at every frame.
        from PySide6.QtGui import QFont, QFontMetrics

        mono = QFont("DejaVu Sans Mono")
        mono.setStyleHint(QFont.Monospace)
        fm = QFontMetrics(mono)
        self.time_label.setMinimumWidth(fm.horizontalAdvance("000:00.00 / 000:00.00") + 24)
        self.position_label.setMinimumWidth(fm.horizontalAdvance("frame 000000/000000 · TR 0000/0000") + 16)
        self.position_label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)

        head = QHBoxLayout()
        head.addWidget(title)
        head.addSpacing(8)
        head.addWidget(self.episode_label, 1)
        controls = QHBoxLayout()
        controls.addWidget(self.play_button)
        controls.addWidget(self.slider, 1)
        controls.addWidget(self.speed_box)
        info = QHBoxLayout()
        info.addWidget(self.time_label)
        info.addStretch(1)
        info.addWidget(self.position_label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(4)
        lay.addLayout(head)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.subtitle)
        lay.addLayout(controls)
        lay.addLayout(info)

        state.events.time.connect(self._on_time)
        state.events.playing.connect(self._on_playing)
        state.events.speed.connect(self._on_speed)
        state.events.timeline.connect(self._on_timeline)
        self.set_session(session)

    # ---- session ----------------------------------------------------------------------
    def set_session(self, session) -> None:
        self.session = session
        self.shown_frame_index = None
        if session is None:
            self.slider.setRange(0, 0)
            self.canvas.set_rgb(None)
            self.episode_label.setText("")
            return
        ep = session.episode
        self.episode_label.setText(ep.name + (f"  ·  {session.video.width}×{session.video.height}, "
                                              f"{session.video.fps:.3g} fps" if session.video is not None else ""))
        self._on_timeline(None)
        self._show(self.state.time)

    def _on_timeline(self, _e) -> None:
        tl = self.state.timeline
        duration_ms = int(round((tl.duration_s if tl is not None else 0.0) * 1000))
        self.slider.blockSignals(True)
        self.slider.setRange(0, duration_ms)
        self.slider.blockSignals(False)

    # ---- model -> widgets ---------------------------------------------------------------
    def _on_time(self, e: Event) -> None:
        if self.state.playing and not self._ticking:
            self._anchor(e.value)   # the user scrubbed while playing: continue from there
        self._show(e.value)

    def _show(self, t_s: float) -> None:
        tl = self.state.timeline
        ms = int(round(t_s * 1000))
        if self.slider.value() != ms:
            self.slider.blockSignals(True)
            self.slider.setValue(ms)
            self.slider.blockSignals(False)
        duration = tl.duration_s if tl is not None else 0.0
        self.time_label.setText(f"{format_time(t_s)} / {format_time(duration)}")
        if tl is None or self.session is None:
            return
        i = tl.frame_index(t_s)
        k = tl.tr_index(t_s)
        self.position_label.setText(f"frame {i}/{tl.n_frames - 1} · TR {k}/{tl.n_trs - 1}")
        if i != self.shown_frame_index:   # a view ignores a value it already shows
            if self.shown_frame_index is not None and self._ticking and i > self.shown_frame_index + 1:
                self.dropped_frames += i - self.shown_frame_index - 1
            self.canvas.set_rgb(self.session.video.frame(i) if self.session.video is not None else None)
            self.shown_frame_index = i
        cue = self.session.cue_at(t_s)
        if cue != self.shown_cue:
            self.shown_cue = cue
            self.subtitle.setText(cue)

    # ---- widgets -> model ---------------------------------------------------------------
    def _slider_moved(self, ms: int) -> None:
        self.state.time = ms / 1000.0

    def _play_toggled(self, on: bool) -> None:
        self.state.playing = on

    # ---- playback -----------------------------------------------------------------------
    def _anchor(self, t_s: float) -> None:
        self._anchor_time_s = float(t_s)
        self._anchor_wall_s = time.monotonic()

    def _on_playing(self, e: Event) -> None:
        playing = bool(e.value)
        if self.play_button.isChecked() != playing:
            self.play_button.blockSignals(True)
            self.play_button.setChecked(playing)
            self.play_button.blockSignals(False)
        self.play_button.setIcon(self.style().standardIcon(QStyle.SP_MediaPause if playing else QStyle.SP_MediaPlay))
        tl = self.state.timeline
        if playing:
            if tl is not None and self.state.time >= tl.duration_s - 1e-6:
                self.state.time = 0.0   # play again from the start
            self._anchor(self.state.time)
            self.dropped_frames = 0
            self.timer.start()
        else:
            self.timer.stop()

    def _on_speed(self, e: Event) -> None:
        i = SPEEDS.index(e.value) if e.value in SPEEDS else -1
        if i >= 0 and self.speed_box.currentIndex() != i:
            self.speed_box.blockSignals(True)
            self.speed_box.setCurrentIndex(i)
            self.speed_box.blockSignals(False)
        self._anchor(self.state.time)

    def _tick(self) -> None:
        tl = self.state.timeline
        t = self._anchor_time_s + (time.monotonic() - self._anchor_wall_s) * self.state.speed
        self._ticking = True
        try:
            self.state.time = t
        finally:
            self._ticking = False
        if tl is None or t >= tl.duration_s:
            self.state.playing = False

    def toggle_play(self) -> None:
        self.state.playing = not self.state.playing

    def close_view(self) -> None:
        self.timer.stop()
        for name, cb in (("time", self._on_time), ("playing", self._on_playing),
                         ("speed", self._on_speed), ("timeline", self._on_timeline)):
            getattr(self.state.events, name).disconnect(cb)
