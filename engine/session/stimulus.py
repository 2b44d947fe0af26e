"""The stimulus of an episode: video frames (through the scrub proxy when built), subtitles, words.

:class:`Stimulus` holds the episode's video reader, its subtitle cues and word timings, and
swaps the reader for the scrub proxy (same frames at the same times) and back.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from ..errors import DataError, MismatchError, expected_found

__all__ = ["Stimulus"]


class Stimulus:
    """Video, cues and words of one episode.

    Parameters
    ----------
    video : VideoReader-like or None
        ``.frame(i)``, ``.frame_times_s``, ``.fps``, ``.duration_s``, ``.n_frames``, ``.path``.
    words, cues : DataFrame or None
        ``onset_s, duration_s, word`` and ``onset_s, duration_s, text``.
    source_path : Path or None
        The episode's own video file (the reader may show a proxy of it).
    episode_name : str
        For messages.
    """

    def __init__(self, video=None, words=None, cues=None, source_path=None, episode_name: str = "") -> None:
        self.video = video
        self.words = words
        self.cues = cues
        self.source_path = source_path
        self.episode_name = episode_name
        self._cue_onsets_s, self._cue_offsets_s, self._cue_texts = self._index_cues(cues)

    @staticmethod
    def _index_cues(cues):
        if cues is None or len(cues) == 0:
            return np.zeros(0), np.zeros(0), []
        order = np.argsort(np.asarray(cues["onset_s"], dtype=float), kind="stable")
        on = np.asarray(cues["onset_s"], dtype=float)[order]
        off = on + np.asarray(cues["duration_s"], dtype=float)[order]
        texts = [str(x) for x in np.asarray(cues["text"], dtype=object)[order]]
        return on, off, texts

    def cue_at(self, t_s: float) -> str:
        """Subtitle text on screen at ``t_s`` ("" between cues); overlapping cues are joined."""
        if not self._cue_texts:
            return ""
        t_s = float(t_s)
        last = int(np.searchsorted(self._cue_onsets_s, t_s, side="right"))
        return "\n".join(self._cue_texts[i] for i in range(last) if self._cue_offsets_s[i] > t_s)

    def words_between(self, start_s: float, stop_s: float) -> List[str]:
        """Words whose onset falls in ``[start_s, stop_s)``."""
        if self.words is None or len(self.words) == 0:
            return []
        on = np.asarray(self.words["onset_s"], dtype=float)
        keep = (on >= start_s) & (on < stop_s)
        return [str(w) for w in np.asarray(self.words["word"], dtype=object)[keep]]

    # ---- scrub proxy ----------------------------------------------------------------------
    @property
    def is_proxy(self) -> bool:
        """True when frames are shown from the scrub proxy instead of the episode's file."""
        return (self.video is not None and self.source_path is not None
                and Path(self.video.path).resolve() != Path(self.source_path).resolve())

    def needs_scrub_proxy(self, max_key_spacing: int = 5) -> bool:
        """True when the episode's key frames are sparse (a seek decodes more than
        ``max_key_spacing`` frames on average) and frames are not already shown from a proxy."""
        if self.video is None or self.source_path is None or self.is_proxy:
            return False
        keys = np.asarray(self.video.keyframe_indices())
        n = int(self.video.n_frames)
        return n > max_key_spacing and n / max(len(keys), 1) > max_key_spacing

    def swap_video(self, path) -> bool:
        """Show frames from ``path`` (the scrub proxy, or the original file) from now on.

        The new reader must hold the same frames at the same times (so the timeline, and the
        frame index shown at the current time, do not change); otherwise it is closed, the
        current reader is kept and a MismatchError says why. Returns True if swapped.
        """
        from ..io.video import VideoReader

        if self.video is None:
            raise DataError(f"episode {self.episode_name}: expected a video to swap, found none")
        path = Path(path)
        if Path(self.video.path).resolve() == path.resolve():
            return False
        new = VideoReader(path)
        old_times = np.asarray(self.video.frame_times_s)
        if new.n_frames != self.video.n_frames or not np.allclose(new.frame_times_s, old_times, atol=1e-6):
            found = f"{new.n_frames} frames" + (" at other times" if new.n_frames == self.video.n_frames else "")
            new.close()
            raise MismatchError(expected_found(f"frames of {path.name}",
                                               f"{len(old_times)} frames at the episode's times", found))
        old, self.video = self.video, new
        old.close()
        return True

    def use_original_video(self) -> bool:
        """Show frames from the episode's own file again (True if that changed anything)."""
        if not self.is_proxy:
            return False
        return self.swap_video(self.source_path)

    def close(self) -> None:
        """Release the video file."""
        if self.video is not None:
            self.video.close()
