"""Where AlignScope keeps its data and caches: one home for every default folder.

- caches (features, video proxies, projected atlases): ``$ALIGNSCOPE_CACHE_DIR/<kind>``, else the
  user cache folder (``~/.cache/AlignScope/<kind>`` on Linux). A kind may have its own override
  (``$ALIGNSCOPE_CACHE`` for features, ``$ALIGNSCOPE_ATLAS_CACHE`` for atlases), kept for scripts
  that set them;
- data (the demo project): ``$ALIGNSCOPE_DATA_DIR``, else the user data folder.

The window's Preferences set ``ALIGNSCOPE_CACHE_DIR``, so one setting moves every cache.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "cache_dir", "data_dir", "CACHE_KINDS"]

APP = "AlignScope"
#: kind -> the environment variable that overrides that kind's folder alone
CACHE_KINDS = {"features": "ALIGNSCOPE_CACHE", "proxies": None, "atlases": "ALIGNSCOPE_ATLAS_CACHE"}


def cache_root() -> Path:
    """``$ALIGNSCOPE_CACHE_DIR`` or the user cache folder."""
    env = os.environ.get("ALIGNSCOPE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP))


def cache_dir(kind: str) -> Path:
    """The cache folder of ``kind`` (one of :data:`CACHE_KINDS`); not created here."""
    if kind not in CACHE_KINDS:
        raise ValueError(f"cache kind: got {kind!r}. Supported values are: {', '.join(CACHE_KINDS)}")
    own = CACHE_KINDS[kind]
    if own and os.environ.get(own):
        return Path(os.environ[own]).expanduser()
    return cache_root() / kind


def data_dir() -> Path:
    """``$ALIGNSCOPE_DATA_DIR`` or the user data folder (the demo project lives below it)."""
    env = os.environ.get("ALIGNSCOPE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP))
