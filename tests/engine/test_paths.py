"""One home for the default folders: one setting moves every cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.demo import default_demo_dir
from engine.features.cache import default_cache_dir
from engine.io.atlases import default_atlas_cache_dir
from engine.io.proxy import default_proxy_dir
from engine.paths import cache_dir


def test_cache_root_moves_every_cache(monkeypatch, tmp_path):
    for var in ("ALIGNSCOPE_CACHE", "ALIGNSCOPE_ATLAS_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ALIGNSCOPE_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "features"
    assert default_proxy_dir() == tmp_path / "c" / "proxies"
    assert default_atlas_cache_dir() == tmp_path / "c" / "atlases"


def test_own_overrides_and_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGNSCOPE_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "feats"))
    monkeypatch.setenv("ALIGNSCOPE_ATLAS_CACHE", str(tmp_path / "atl"))
    assert default_cache_dir() == tmp_path / "feats"
    assert default_atlas_cache_dir() == tmp_path / "atl"
    assert default_proxy_dir() == tmp_path / "c" / "proxies"
    monkeypatch.delenv("ALIGNSCOPE_DEMO_DIR", raising=False)
    monkeypatch.setenv("ALIGNSCOPE_DATA_DIR", str(tmp_path / "d"))
    assert default_demo_dir().parent == tmp_path / "d"
    with pytest.raises(ValueError, match="Supported values are: features, proxies, atlases"):
        cache_dir("models")


def test_the_suite_never_writes_the_user_cache():
    assert not str(default_proxy_dir()).startswith(str(Path.home() / ".cache"))
