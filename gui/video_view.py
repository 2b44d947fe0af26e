"""The video pane: the frame on screen, play/pause, a time slider, time/frame/TR, the subtitle.

Playback follows the wall clock, as MNE's ``Brain`` does: each tick sets the time to
``start_time + elapsed_wall * speed``, so a slow frame is dropped rather than letting
the video drift behind the clock. Every displayed number is derived from the one time
value of the :class:`~engine.state.AppState` through its timeline.
"""

from __future__ import annotations

import time
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QKeySequence, QPainter, QShortcut
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QSizePolicy, QSlider, QStyle,
                               QToolButton, QVBoxLayout, QWidget)

from engine.errors import AlignScopeError
from engine.session.colour import is_special_token, token_shading
from engine.state import AppState, Event

from .widgets import ElidedLabel

HRF_LAG_S = 5.0   # peak of the canonical haemodynamic response (SPM/Glover), seconds


class Sound:
    """The episode's sound through Qt Multimedia (``QMediaPlayer`` + ``QAudioOutput``),
    following the view's clock: play, pause, seek, rate, mute and volume.

    The player is made on first play (or :meth:`load`). Where Qt Multimedia cannot be used,
    or no audio output device exists (no sound server), the video still plays, silently,
    and :attr:`status` says why in words for the pane.

    Parameters
    ----------
    parent : QObject
    on_status : callable or None
        Called with the new :attr:`status` text whenever it changes.
    """

    def __init__(self, parent, on_status=None) -> None:
        self.parent = parent
        self.source = None
        self.player = None
        self.output = None
        self.muted = False
        self.volume = 0.8              # linear gain 0..1 given to the QAudioOutput
        self.error: Optional[str] = None   # why no player could be made
        self.status = ""               # "" when sound plays; otherwise why it does not
        self._on_status = on_status

    # ---- what the pane says -----------------------------------------------------------
    @staticmethod
    def output_devices() -> List[str]:
        """Names of the audio output devices Qt Multimedia sees (empty: no sound server/card)."""
        try:
            from PySide6.QtMultimedia import QMediaDevices

            return [d.description() for d in QMediaDevices.audioOutputs()]
        except Exception:  # noqa: BLE001 - Qt Multimedia missing (e.g. libpulse): no devices
            return []

    def has_audio(self) -> Optional[bool]:
        """Whether the loaded video has a sound track (None until the player has loaded it)."""
        if self.player is None:
            return None
        from PySide6.QtMultimedia import QMediaPlayer

        if self.player.mediaStatus() in (QMediaPlayer.NoMedia, QMediaPlayer.LoadingMedia):
            return None
        return bool(self.player.hasAudio())

    def update_status(self) -> str:
        """Recompute :attr:`status` (and tell ``on_status`` when it changed)."""
        if not self.source:
            text = ""
        elif self.error is not None:
            text = self.error
        elif not self.output_devices():
            text = "no sound: no audio output device (is a sound server such as PulseAudio running?)"
        elif self.has_audio() is False:
            text = "no sound: this video has no sound track"
        else:
            text = ""
        if text != self.status:
            self.status = text
            if self._on_status is not None:
                self._on_status(text)
        return text

    # ---- the player ---------------------------------------------------------------------
    def set_source(self, path) -> None:
        self.source = str(path) if path else None
        if self.player is not None:
            from PySide6.QtCore import QUrl

            self.player.stop()
            self.player.setSource(QUrl.fromLocalFile(self.source) if self.source else QUrl())
        self.update_status()

    def load(self) -> bool:
        """Make the player for the current video (done on first play); False where it cannot be made."""
        if self.player is not None:
            return True
        if self.error is not None or not self.source:
            return False
        try:
            from PySide6.QtCore import QUrl
            from PySide6.QtMultimedia import QAudioOutput, QMediaPlayer

            self.output = QAudioOutput(self.parent)
            self.output.setMuted(self.muted)
            self.output.setVolume(self.volume)
            self.player = QMediaPlayer(self.parent)
            self.player.setAudioOutput(self.output)
            self.player.setVideoOutput(None)
            self.player.errorOccurred.connect(self._player_error)
            self.player.mediaStatusChanged.connect(lambda _s: self.update_status())
            self.player.setSource(QUrl.fromLocalFile(self.source))
        except Exception as exc:  # noqa: BLE001 - missing libpulse or Qt Multimedia: play silently
            self.player = self.output = None
            self.error = f"no sound: Qt Multimedia unavailable ({type(exc).__name__}: {exc})"
            self.update_status()
            return False
        self.update_status()
        return True

    def _player_error(self, _error, message: str) -> None:
        self.error = "no sound: " + (message or "the video's sound track could not be played")
        self.update_status()

    def play(self, t_s: float, rate: float) -> None:
        if self.muted or not self.load():
            return
        self.player.setPlaybackRate(float(rate))
        self.player.setPosition(int(t_s * 1000))
        self.player.play()

    def pause(self) -> None:
        if self.player is not None:
            self.player.pause()

    def seek(self, t_s: float) -> None:
        if self.player is not None:
            self.player.setPosition(int(t_s * 1000))

    def set_rate(self, rate: float) -> None:
        if self.player is not None:
            self.player.setPlaybackRate(float(rate))

    def set_muted(self, muted: bool) -> None:
        self.muted = bool(muted)
        if self.output is not None:
            self.output.setMuted(self.muted)
        if self.muted:
            self.pause()

    def set_volume(self, gain: float) -> None:
        """Linear gain 0..1 of the audio output."""
        self.volume = float(min(max(gain, 0.0), 1.0))
        if self.output is not None:
            self.output.setVolume(self.volume)

    def close(self) -> None:
        """Stop and let go of the player (closing the pane)."""
        if self.player is not None:
            from PySide6.QtCore import QUrl

            self.player.stop()
            self.player.setSource(QUrl())
            self.player.deleteLater()
            self.output.deleteLater()
            self.player = self.output = None


def slider_to_gain(position: int) -> float:
    """Volume slider position 0..100 -> linear gain, on the logarithmic scale ears follow
    (Qt's ``QtAudio.convertVolume``, as Qt's own media player example does)."""
    try:
        from PySide6.QtMultimedia import QtAudio

        return float(QtAudio.convertVolume(position / 100.0, QtAudio.VolumeScale.LogarithmicVolumeScale,
                                           QtAudio.VolumeScale.LinearVolumeScale))
    except Exception:  # noqa: BLE001 - Qt Multimedia missing: the same curve by hand
        v = position / 100.0
        return float(0.0 if v <= 0 else (1.0 if v >= 1 else -np.log(1.0 - v) / np.log(100.0)))


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


class TokenStrip(QWidget):
    """The words of the model's context, each on a background as strong as its attention.

    Tokens are laid out left to right on up to ``LINES`` lines; when they do not all fit,
    the last ones (nearest the query, the window's last word) are kept. ``token_rects``
    holds where each shown token was drawn (tests read it).
    """

    LINES = 2
    SHADE = QColor(255, 170, 40)     # the strongest attention: amber on the dark pane

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.tokens: List[str] = []
        self.shading = np.zeros(0, np.float32)
        self.token_rects: List[Tuple[int, QRect]] = []     # (token index, rect)
        self.caption = ""
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF(), 9.5))
        self.setFont(font)
        fm = QFontMetrics(font)
        self._line_h = fm.height() + 6
        self.setFixedHeight(self.LINES * self._line_h + 6)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

    def set_tokens(self, tokens: Sequence[str], shading: np.ndarray, caption: str = "") -> None:
        self.tokens = [str(t) for t in tokens]
        self.shading = np.asarray(shading, dtype=np.float32)
        self.caption = caption
        self.update()

    @staticmethod
    def display_text(token: str) -> Tuple[str, bool]:
        """(text, joins the previous token): WordPiece ``##ing`` and BPE ``Ġword`` spellings."""
        if token.startswith("##"):
            return token[2:], True
        if token.startswith(("Ġ", "▁")):
            return token[1:], False
        return token, False

    def _layout(self) -> List[Tuple[int, QRect]]:
        fm = QFontMetrics(self.font())
        pad, gap, width = 4, 3, max(self.width() - 8, 10)
        items = []
        for i, tok in enumerate(self.tokens):
            text, joined = self.display_text(tok)
            items.append((i, text, joined, fm.horizontalAdvance(text) + 2 * pad))
        # keep the last tokens that fit on LINES lines
        lines, x, start = 1, 0, len(items)
        for j in range(len(items) - 1, -1, -1):
            w = items[j][3] + (0 if items[j][2] else gap)
            if x + w > width:
                if lines == self.LINES:
                    break
                lines, x = lines + 1, 0
            x += w
            start = j
        rects, x, y = [], 4, 3
        for i, text, joined, w in items[start:]:
            step = 0 if joined and rects else gap
            if x + step + w > width + 4 and rects:
                x, y = 4, y + self._line_h
                step = 0
            x += step
            rects.append((i, QRect(x, y, w, self._line_h - 4)))
            x += w
        return rects

    def paintEvent(self, _e) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#15181c"))
        if not self.tokens:
            p.setPen(QColor("#8a929c"))
            p.drawText(self.rect(), Qt.AlignCenter, self.caption or "No words in the model's context here")
            p.end()
            self.token_rects = []
            return
        self.token_rects = self._layout()
        for i, rect in self.token_rects:
            s = float(self.shading[i]) if i < len(self.shading) else 0.0
            text = self.display_text(self.tokens[i])[0]
            if is_special_token(self.tokens[i]):
                # [CLS]/[SEP] soak up attention as no-op targets: outlined, not shaded like words
                p.setPen(QColor("#5f6670"))
                p.drawRect(rect.adjusted(0, 0, -1, -1))
                p.drawText(rect, Qt.AlignCenter, text)
                continue
            bg = QColor(self.SHADE)
            bg.setAlphaF(0.08 + 0.92 * s)
            p.fillRect(rect, bg)
            p.setPen(QColor("#111111") if s > 0.55 else QColor("#e8eaed"))
            p.drawText(rect, Qt.AlignCenter, text)
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
        self.subtitle.setMinimumHeight(36)
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

        # ---- attention overlay controls -----------------------------------------------
        self.attention_check = QCheckBox("Attention")
        self.attention_check.setToolTip("Show the model's attention on each frame (patches) or on the words "
                                        "of its context (tokens)")
        self.attention_box = QComboBox()
        self.attention_box.setToolTip("Attention file (model) registered in the project")
        self.attention_layer_box = QComboBox()
        self.attention_layer_box.setToolTip("Rollout over all layers, or one layer's attention")
        self.attention_head_box = QComboBox()
        for box in (self.attention_box, self.attention_layer_box, self.attention_head_box):
            box.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.attention_head_box.setToolTip("Mean over heads, or one head")
        self.opacity_slider = QSlider(Qt.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(55)
        self.opacity_slider.setFixedWidth(90)
        self.opacity_slider.setToolTip("Opacity of the attention map over the frame")
        self.attention_label = QLabel("")
        self.attention_label.setObjectName("paneHint")
        self.attention_label.setMinimumWidth(fm.horizontalAdvance("TR 0000 shown (kept TR at or before)") // 2)
        self.token_strip = TokenStrip()
        self.token_strip.setVisible(False)
        self.attention_check.toggled.connect(lambda _on: self._attention_changed())
        self.attention_box.currentIndexChanged.connect(self._attention_file_chosen)
        self.attention_layer_box.currentIndexChanged.connect(lambda _i: self._attention_changed())
        self.attention_head_box.currentIndexChanged.connect(lambda _i: self._attention_changed())
        self.opacity_slider.valueChanged.connect(lambda _v: self._attention_changed())
        self.attention_row = QWidget()
        arow = QHBoxLayout(self.attention_row)
        arow.setContentsMargins(0, 0, 0, 0)
        arow.addWidget(self.attention_check)
        arow.addWidget(self.attention_box, 1)
        arow.addWidget(self.attention_layer_box)
        arow.addWidget(self.attention_head_box)
        arow.addWidget(QLabel("opacity"))
        arow.addWidget(self.opacity_slider)
        arow.addWidget(self.attention_label, 1)
        self.attention_row.setVisible(False)
        self._raw_rgb: Optional[np.ndarray] = None
        self._shown_attention_key = None
        self.attention_error = ""

        head = QHBoxLayout()
        head.addWidget(title)
        head.addSpacing(8)
        head.addWidget(self.episode_label, 1)
        # stepping (frame ,/. and TR with the arrows), Home/End, and the haemodynamic lag
        self.prev_frame_button = QToolButton()
        self.prev_frame_button.setText("◂")
        self.prev_frame_button.setToolTip("Previous frame (,)")
        self.prev_frame_button.clicked.connect(lambda: self.step_frames(-1))
        self.next_frame_button = QToolButton()
        self.next_frame_button.setText("▸")
        self.next_frame_button.setToolTip("Next frame (.)")
        self.next_frame_button.clicked.connect(lambda: self.step_frames(1))
        self.lag_s = HRF_LAG_S
        self.lag_check = QCheckBox(f"stimulus −{HRF_LAG_S:g} s")
        self.lag_check.setToolTip(f"Show the stimulus {HRF_LAG_S:g} s earlier than the brain time (the haemodynamic "
                                  "lag):\nat a TR, the frame that drove that response")
        self.lag_check.toggled.connect(lambda _on: self.refresh_frame())
        self._shortcuts = []
        for keys, fn in ((",", lambda: self.step_frames(-1)), (".", lambda: self.step_frames(1)),
                         ("Home", self.go_home), ("End", self.go_end)):
            sc = QShortcut(QKeySequence(keys), self)
            sc.setContext(Qt.WindowShortcut)
            sc.activated.connect(fn)
            self._shortcuts.append(sc)
        controls = QHBoxLayout()
        controls.addWidget(self.play_button)
        controls.addWidget(self.prev_frame_button)
        controls.addWidget(self.next_frame_button)
        controls.addWidget(self.slider, 1)
        controls.addWidget(self.speed_box)
        info = QHBoxLayout()
        info.addWidget(self.time_label)
        info.addWidget(self.lag_check)
        self.sound_label = ElidedLabel("")      # never widens the pane; the whole reason in its tooltip
        self.sound_label.setObjectName("paneHint")
        self.sound = Sound(self, on_status=self._sound_status)
        self.mute_check = QCheckBox("mute")
        self.mute_check.setToolTip("Sound of the episode (Qt Multimedia) while playing (M)")
        self.mute_check.toggled.connect(self._mute_toggled)
        self.volume_slider = QSlider(Qt.Horizontal)
        self.volume_slider.setRange(0, 100)
        self.volume_slider.setValue(80)
        self.volume_slider.setFixedWidth(70)
        self.volume_slider.setToolTip("Volume")
        self.volume_slider.valueChanged.connect(lambda v: self.sound.set_volume(slider_to_gain(v)))
        self.sound.set_volume(slider_to_gain(self.volume_slider.value()))
        mute_key = QShortcut(QKeySequence("M"), self)
        mute_key.setContext(Qt.WindowShortcut)
        mute_key.activated.connect(self.mute_check.toggle)
        self._shortcuts.append(mute_key)
        info.addWidget(self.mute_check)
        info.addWidget(self.volume_slider)
        info.addStretch(1)
        head.addWidget(self.sound_label)   # the header row has room for why there is no sound
        info.addWidget(self.position_label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(4)
        lay.addLayout(head)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.token_strip)
        lay.addWidget(self.subtitle)
        lay.addLayout(controls)
        lay.addLayout(info)
        lay.addWidget(self.attention_row)

        state.events.time.connect(self._on_time)
        state.events.playing.connect(self._on_playing)
        state.events.speed.connect(self._on_speed)
        state.events.timeline.connect(self._on_timeline)
        self.set_session(session)

    # ---- session ----------------------------------------------------------------------
    def set_session(self, session) -> None:
        self.session = session
        if hasattr(self, "sound"):
            self.sound.set_source(getattr(session, "video_source_path", None) if session is not None else None)
        self.shown_frame_index = None
        self._shown_attention_key = None
        self._fill_attention_boxes()
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
        k = tl.tr_index(t_s)
        t_stim = self.stimulus_time(t_s)
        i = tl.frame_index(t_stim)
        self.position_label.setText(f"frame {i}/{tl.n_frames - 1} · TR {k}/{tl.n_trs - 1}")
        akey = self._attention_key(t_s)
        if i != self.shown_frame_index:   # a view ignores a value it already shows
            if self.shown_frame_index is not None and self._ticking and i > self.shown_frame_index + 1:
                self.dropped_frames += i - self.shown_frame_index - 1
            self._raw_rgb = self.session.video.frame(i) if self.session.video is not None else None
            self.shown_frame_index = i
            self._paint_frame(t_s, akey)
        elif akey != self._shown_attention_key:
            self._paint_frame(t_s, akey)
        cue = self.session.cue_at(t_stim)
        if cue != self.shown_cue:
            self.shown_cue = cue
            self.subtitle.setText(cue)

    def stimulus_time(self, t_s: float) -> float:
        """Episode time of the stimulus shown at brain time ``t_s`` (earlier by the lag when on)."""
        return max(float(t_s) - self.lag_s, 0.0) if self.lag_check.isChecked() else float(t_s)

    def step_frames(self, n: int) -> None:
        """Move the time by ``n`` video frames (to the start of that frame)."""
        tl = self.state.timeline
        if tl is None:
            return
        i = min(max(tl.frame_index(self.state.time) + int(n), 0), max(tl.n_frames - 1, 0))
        self.state.time = tl.frame_time(i)

    def step_trs(self, n: int) -> None:
        """Move the time by ``n`` TRs (to the start of that TR)."""
        tl = self.state.timeline
        if tl is None:
            return
        k = min(max(tl.tr_index(self.state.time) + int(n), 0), max(tl.n_trs - 1, 0))
        self.state.time = min(tl.tr_time(k), tl.duration_s)

    def go_home(self) -> None:
        self.state.time = 0.0

    def go_end(self) -> None:
        tl = self.state.timeline
        if tl is not None:
            self.state.time = max(tl.duration_s - 1e-3, 0.0)

    def refresh_frame(self) -> None:
        """Decode the frame shown at the current time again (after the reader was swapped)."""
        self.shown_frame_index = None
        self._shown_attention_key = None
        self._show(self.state.time)

    # ---- attention overlay --------------------------------------------------------------
    @property
    def attention_name(self) -> Optional[str]:
        return self.attention_box.currentText() or None

    @property
    def attention_layer(self) -> str:
        return self.attention_layer_box.currentData() or "rollout"

    @property
    def attention_head(self):
        h = self.attention_head_box.currentData()
        return "mean" if h is None or h == "mean" else int(h)

    @property
    def opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    def set_attention(self, on: bool = True, name: Optional[str] = None, layer=None, head=None,
                      opacity: Optional[float] = None) -> None:
        """Set the overlay as the controls would (used by tests and the screenshot command)."""
        if name is not None:
            self.attention_box.setCurrentIndex(self.attention_box.findText(name))
        if layer is not None:
            self.attention_layer_box.setCurrentIndex(self.attention_layer_box.findData(layer))
        if head is not None:
            self.attention_head_box.setCurrentIndex(self.attention_head_box.findData(head))
        if opacity is not None:
            self.opacity_slider.setValue(int(round(opacity * 100)))
        self.attention_check.setChecked(on)
        self._attention_changed()

    def attention_state(self) -> Optional[dict]:
        """What the overlay shows now (None when off), for screenshots' JSON."""
        key = self._shown_attention_key
        if key is None or key[0] == "error":
            return None
        name, tr, layer, head, opacity = key
        return {"name": name, "tr": tr, "layer": layer, "head": head, "opacity": opacity / 100.0,
                "kind": self.session.attention_kind(name) if self.session is not None else None,
                "tokens_visible": not self.token_strip.isHidden(), "label": self.attention_label.text()}

    def _fill_attention_boxes(self) -> None:
        names = []
        if self.session is not None:
            try:
                names = self.session.attention_names()
            except AlignScopeError as exc:
                self.attention_error = str(exc)
        self.attention_box.blockSignals(True)
        self.attention_box.clear()
        self.attention_box.addItems(names)
        self.attention_box.blockSignals(False)
        self.attention_row.setVisible(bool(names))
        if not names:
            self.attention_check.setChecked(False)
        self._attention_file_chosen(self.attention_box.currentIndex())

    def _attention_file_chosen(self, _index: int) -> None:
        name = self.attention_name
        layers, n_heads = [], 0
        if self.session is not None and name:
            try:
                layers = self.session.attention_layers(name)
                n_heads = self.session.attention_heads(name)
            except AlignScopeError as exc:
                self.attention_error = str(exc)
                self.attention_label.setText(str(exc))
        for box in (self.attention_layer_box, self.attention_head_box):
            box.blockSignals(True)
            box.clear()
        for layer in layers:
            digits = layer[len("layer"):] if layer.startswith("layer") else ""
            label = f"layer {int(digits)}" if digits.isdigit() else layer
            self.attention_layer_box.addItem(label, layer)
            if layer == "rollout":
                self.attention_layer_box.setItemData(0, "Attention rollout: attention combined over all layers "
                                                        "(Abnar & Zuidema 2020)", Qt.ToolTipRole)
        self.attention_head_box.addItem("head mean", "mean")
        if n_heads > 1:
            for h in range(n_heads):
                self.attention_head_box.addItem(f"head {h}", h)
        for box in (self.attention_layer_box, self.attention_head_box):
            box.blockSignals(False)
        self._attention_changed()

    def _attention_changed(self) -> None:
        on = self.attention_check.isChecked() and self.attention_name is not None
        for w in (self.attention_box, self.attention_layer_box, self.opacity_slider):
            w.setEnabled(bool(self.attention_name))
        self.attention_head_box.setEnabled(on and self.attention_layer != "rollout")
        if self.session is not None:
            self._show(self.state.time)

    def _attention_key(self, t_s: float):
        """What the overlay shows at ``t_s`` (None when off): file, kept TR, layer, head, opacity."""
        name = self.attention_name
        if not self.attention_check.isChecked() or name is None or self.session is None:
            return None
        try:
            tr = self.session.attention_tr(name, t_s)
        except AlignScopeError as exc:
            return ("error", str(exc))
        head = "mean" if self.attention_layer == "rollout" else self.attention_head
        return (name, tr, self.attention_layer, head, self.opacity_slider.value())

    def _paint_frame(self, t_s: float, akey) -> None:
        """The raw frame, or with the overlay; the token strip and the attention label."""
        self._shown_attention_key = akey
        rgb = self._raw_rgb
        tokens = None
        if akey is None:
            self.attention_label.setText("")
        elif akey[0] == "error":
            self.attention_label.setText(akey[1])
        elif akey[1] is None:
            self.attention_label.setText("no attention kept this early")
        else:
            name, tr, layer, head, opacity = akey
            try:
                values, tokens = self.session.attention_at(name, t_s, layer, head)
                if tokens is None and rgb is not None:
                    rgb = self.session.attention_overlay(rgb, name, t_s, layer, head, opacity / 100.0)
                shown_k = self.state.tr_index
                text = f"TR {tr} shown" + ("" if tr == shown_k else f" (nearest kept before TR {shown_k})")
                if tokens is None and values.size:
                    # the colours stretch min..max of this map: say how much contrast there really is
                    text += f"  ·  {float(values.min()):.3g}–{float(values.max()):.3g}"
                self.attention_label.setText(text)
                if tokens is not None:
                    self.token_strip.set_tokens(tokens, token_shading(tokens, values))
            except AlignScopeError as exc:
                self.attention_label.setText(str(exc))
                tokens = None
        show_strip = akey is not None and akey[0] != "error" and (
            tokens is not None or (akey[1] is not None and self.session is not None
                                   and self.session.attention_kind(akey[0]) == "tokens"))
        if akey is not None and akey[0] != "error" and akey[1] is None:
            self.token_strip.set_tokens([], [], "no attention kept this early")
        if self.token_strip.isHidden() == show_strip:
            self.token_strip.setVisible(show_strip)
        self.canvas.set_rgb(rgb)

    # ---- widgets -> model ---------------------------------------------------------------
    def _slider_moved(self, ms: int) -> None:
        self.state.time = ms / 1000.0

    def _play_toggled(self, on: bool) -> None:
        self.state.playing = on

    # ---- playback -----------------------------------------------------------------------
    def _anchor(self, t_s: float) -> None:
        self._anchor_time_s = float(t_s)
        self._anchor_wall_s = time.monotonic()
        if self.state.playing and not self._ticking:
            self.sound.seek(self.stimulus_time(t_s))   # scrubbed while playing: the sound follows

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
            self.sound.play(self.stimulus_time(self.state.time), self.state.speed)
        else:
            self.timer.stop()
            self.sound.pause()

    def _on_speed(self, e: Event) -> None:
        i = SPEEDS.index(e.value) if e.value in SPEEDS else -1
        if i >= 0 and self.speed_box.currentIndex() != i:
            self.speed_box.blockSignals(True)
            self.speed_box.setCurrentIndex(i)
            self.speed_box.blockSignals(False)
        self._anchor(self.state.time)
        self.sound.set_rate(self.state.speed)

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

    def _mute_toggled(self, muted: bool) -> None:
        self.sound.set_muted(muted)
        if not muted and self.state.playing:      # unmuted while playing: the sound joins in
            self.sound.play(self.stimulus_time(self.state.time), self.state.speed)

    def _sound_status(self, text: str) -> None:
        """Why there is no sound (short in the pane, whole in the tooltip); empty when it plays."""
        short = ("" if not text else "no sound: no audio device" if "no audio output device" in text
                 else "no sound track" if "no sound track" in text else "no sound")
        self.sound_label.setText(short)
        self.sound_label.setToolTip(text)      # the whole reason (ElidedLabel's own tooltip is the short text)
        self.sound_label.ensurePolished()
        self.sound_label.setMinimumWidth(self.sound_label.fontMetrics().horizontalAdvance(short) + 8 if short else 0)
        self.mute_check.setToolTip("Sound of the episode (Qt Multimedia) while playing (M)"
                                   + (f"\n{text}" if text else ""))

    def toggle_play(self) -> None:
        self.state.playing = not self.state.playing

    def close_view(self) -> None:
        self.timer.stop()
        self.sound.close()
        for name, cb in (("time", self._on_time), ("playing", self._on_playing),
                         ("speed", self._on_speed), ("timeline", self._on_timeline)):
            getattr(self.state.events, name).disconnect(cb)
