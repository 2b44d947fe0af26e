"""The feature cache: content-addressed keys, cancel and resume, a killed run, cache hits."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")

from engine.errors import JobCancelled  # noqa: E402
from engine.features.base import EpisodeInputs  # noqa: E402
from engine.features.cache import FeatureCache, file_sha256  # noqa: E402
from engine.features.extract import extract_features, extract_features_job  # noqa: E402
from engine.features.registry import build_extractor  # noqa: E402
from engine.jobs import CancelToken, run_sync  # noqa: E402
from tests.engine import test_features_support as S  # noqa: E402

N_TRS = 12
TR_S = 0.5


class Spy:
    """An extractor wrapper that records which TRs it was asked for."""

    def __init__(self, inner):
        self.inner = inner
        self.spec, self.identity, self.modality = inner.spec, inner.identity, inner.modality
        self.layers, self.inputs, self.batch_size = inner.layers, inner.inputs, inner.batch_size
        self.calls = []

    def extract(self, episode, tr_indices=None, token=None, ablate="none"):
        self.calls.append(list(np.asarray(tr_indices).tolist()))
        return (yield from self.inner.extract(episode, tr_indices=tr_indices, token=token, ablate=ablate))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    video = S.make_video(root / "v.mp4", seconds=N_TRS * TR_S + 0.3, size=(32, 32), audio=False)
    vit = S.tiny_vit(root / "vit")
    ep = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, video_path=video)
    return root, ep, vit


def spy(vit):
    return Spy(build_extractor(str(vit), device="cpu", batch_size=2, layers=(1, 2), frames_per_window=2))


def test_file_sha256_matches_hashlib(tmp_path):
    import hashlib

    p = tmp_path / "f.bin"
    data = np.random.default_rng(0).bytes(3 * 1024 * 1024 + 17)
    p.write_bytes(data)
    assert file_sha256(p, chunk_bytes=1 << 20) == hashlib.sha256(data).hexdigest()


def test_big_file_hashes_are_remembered_on_disk(tmp_path, monkeypatch):
    import hashlib

    from engine.features import cache as C

    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(C, "PERSIST_HASH_BYTES", 1000)
    p = tmp_path / "weights.bin"
    p.write_bytes(b"x" * 5000)
    digest = C.file_sha256(p)
    assert digest == hashlib.sha256(b"x" * 5000).hexdigest()
    C._HASH_MEMO.clear()  # a new process: the on-disk memo answers without reading the file
    monkeypatch.setattr(C.hashlib, "sha256", lambda *a: (_ for _ in ()).throw(AssertionError("re-hashed")))
    assert C.file_sha256(p) == digest
    import os

    os.utime(p, ns=(0, 10 ** 9))  # modified: hashed again
    C._HASH_MEMO.clear()
    with pytest.raises(AssertionError, match="re-hashed"):
        C.file_sha256(p)


def test_cancel_then_resume_is_bit_identical_and_computes_only_the_rest(setup, tmp_path):
    root, ep, vit = setup
    reference = {k: v.data for k, v in extract_features(ep, spy(vit), cache_dir=tmp_path / "ref",
                                                       chunk_trs=4).items()}
    ex = spy(vit)
    token = CancelToken()
    seen = []

    def on_progress(p):
        seen.append(p.step)
        if p.step >= 6:  # 6 of 12 TRs done: chunks [0-3] written, [4-7] half done
            token.cancel()

    with pytest.raises(JobCancelled):
        run_sync(extract_features_job(ep, ex, token=token, cache_dir=tmp_path / "c", chunk_trs=4),
                 token=token, on_progress=on_progress)
    cache = FeatureCache(tmp_path / "c")
    parts = list(cache.root.rglob("part_*.h5"))
    assert [p.name for p in parts] == ["part_000000_000003.h5"]
    assert not list(cache.root.rglob("*.h5")) or all(".parts" in str(p) for p in cache.root.rglob("*.h5"))
    resumed = extract_features(ep, ex, cache_dir=tmp_path / "c", chunk_trs=4)
    assert ex.calls[-1] == list(range(4, N_TRS))  # only the TRs not cached
    for name, ref in reference.items():
        assert np.array_equal(resumed[name].data, ref), name  # bit for bit
    assert not list(cache.root.rglob("*.parts"))  # parts folded into the finished entry


def test_killed_run_leaves_partial_files_that_resume_ignores(setup, tmp_path):
    root, ep, vit = setup
    reference = {k: v.data for k, v in extract_features(ep, spy(vit), use_cache=False).items()}
    ex = spy(vit)
    token = CancelToken()

    def stop_after_two_chunks(p):
        if p.step >= 8:
            token.cancel()

    with pytest.raises(JobCancelled):
        run_sync(extract_features_job(ep, ex, token=token, cache_dir=tmp_path / "k", chunk_trs=4),
                 token=token, on_progress=stop_after_two_chunks)
    parts_dir = next((tmp_path / "k").rglob("*.parts"))
    good = sorted(parts_dir.glob("part_*.h5"))
    assert len(good) == 2
    # What a kill -9 in the middle of writing leaves: a half-written temp file, and (from a
    # crashed disk or a copy) a truncated part for the next chunk.
    (parts_dir / ".part_000008_000011.h5.deadbeef.tmp").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    truncated = good[0].read_bytes()[: len(good[0].read_bytes()) // 3]
    (parts_dir / "part_000008_000011.h5").write_bytes(truncated)
    out = extract_features(ep, ex, cache_dir=tmp_path / "k", chunk_trs=4)
    assert ex.calls[-1] == list(range(8, N_TRS))
    for name, ref in reference.items():
        assert np.array_equal(out[name].data, ref), name


def test_cache_key_is_content_addressed_and_a_hit_skips_the_model(setup, tmp_path):
    root, ep, vit = setup
    ex = spy(vit)
    first = extract_features(ep, ex, cache_dir=tmp_path)
    again = extract_features(ep, ex, cache_dir=tmp_path)
    assert len(ex.calls) == 1  # served from the cache
    key = first["layer01"].meta["cache_key"]
    assert again["layer01"].meta["cache_key"] == key
    np.testing.assert_array_equal(again["layer02"].data, first["layer02"].data)
    assert (tmp_path / key[:2] / f"{key}.h5").exists()
    blank = extract_features(ep, ex, cache_dir=tmp_path, ablate="vision")
    assert blank["layer01"].meta["cache_key"] != key and len(ex.calls) == 2
    assert blank["layer01"].name.endswith("(no vision)")
    # A spec (string model) with other settings gives other keys; the same settings the same key.
    keys = set()
    for overrides in [dict(window_s=1.0), dict(window_s=0.5), dict(window_s=0.5, pooling="cls"),
                      dict(window_s=0.5, layers=(1,))]:
        out = extract_features(ep, str(vit), cache_dir=tmp_path, device="cpu", frames_per_window=2, **overrides)
        keys.add(next(iter(out.values())).meta["cache_key"])
    assert len(keys) == 4
    # Another stimulus file (other bytes) -> another key.
    other = S.make_video(tmp_path / "other.mp4", seconds=N_TRS * TR_S + 0.3, size=(32, 32), audio=False, seed=1)
    ep2 = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, video_path=other)
    out2 = extract_features(ep2, ex, cache_dir=tmp_path)
    assert out2["layer01"].meta["cache_key"] != key
    assert out2["layer01"].meta["provenance"]["stimulus"]["video"] == file_sha256(other)


def test_words_enter_the_key_of_a_language_model_named_by_family(tmp_path):
    import pandas as pd

    bert = S.tiny_bert(tmp_path / "bert")
    words = pd.DataFrame({"onset_s": [0.1, 0.6], "duration_s": [0.2, 0.2], "word": ["the", "cat"]})
    ep = EpisodeInputs(n_trs=2, tr_s=0.5, words=words)
    a = extract_features(ep, str(bert), family="bert", cache_dir=tmp_path / "c", device="cpu")
    other = words.assign(word=["the", "dog"])
    b = extract_features(EpisodeInputs(n_trs=2, tr_s=0.5, words=other), str(bert), family="bert",
                         cache_dir=tmp_path / "c", device="cpu")
    assert a["layer02"].meta["cache_key"] != b["layer02"].meta["cache_key"]
    np.testing.assert_array_equal(a["layer02"].data[0], b["layer02"].data[0])
    assert not np.allclose(a["layer02"].data[1], b["layer02"].data[1])
    assert a["layer02"].meta["spec"]["modality"] == "language"


# ---- integrity: checksums and keys; a cache that cannot be written ------------------------------
def _flip_byte_of(path, dataset):
    import h5py

    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_parts_and_entries_that_do_not_verify_are_recomputed_never_trusted(tmp_path):
    import shutil

    cache = FeatureCache(tmp_path)
    key, other = "ab" + "0" * 62, "ab" + "1" * 62
    rows = np.arange(12, dtype=np.float32).reshape(6, 2)
    p1 = cache.write_part(key, [0, 1, 2], {"layer/1": rows[:3]})
    cache.write_part(key, [3, 4, 5], {"layer/1": rows[3:]})
    done, feats = cache.load_parts(key, 6)
    assert done.all() and np.array_equal(feats["layer/1"], rows)

    _flip_byte_of(p1, "features/layer%2F1")           # a flipped bit in the data
    done, feats = cache.load_parts(key, 6)
    assert done.tolist() == [False] * 3 + [True] * 3 and not p1.exists()
    assert p1 in cache.discarded

    stray = cache.write_part(other, [0, 1, 2], {"layer/1": rows[:3] + 100})   # another request's part
    shutil.copy(stray, cache.parts_dir(key) / stray.name)
    done, feats = cache.load_parts(key, 6)
    assert not done[:3].any() and not (cache.parts_dir(key) / stray.name).exists()

    entry = cache.save(key, {"layer/1": rows}, {"spec": "x"})
    assert cache.load(key)[0]["layer/1"].tolist() == rows.tolist()
    _flip_byte_of(entry, "features/layer%2F1")
    assert cache.load(key) is None and not entry.exists()
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_bytes(b"not hdf5 at all")
    assert cache.load(key) is None and not entry.exists()
    shutil.copy(cache.save(other, {"layer/1": rows}, {}), entry)     # a valid entry under the wrong name
    assert cache.load(key) is None


def test_a_cache_that_cannot_be_written_never_costs_the_extraction(tmp_path, monkeypatch):
    import errno

    from engine.features import cache as C
    from engine.features import registry
    from engine.features.base import ModelSpec
    from tests.engine.test_features_plugins import RampExtractor

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C, "_write_h5_atomic", full)
    registry.register_family("ramp", RampExtractor, needs_weights=False)
    registry.register_spec(ModelSpec(name="ramp-cache", model="ramp", family="ramp", modality="multimodal",
                                     window_s=1.0))
    ep = EpisodeInputs(n_trs=5, tr_s=1.0)
    with pytest.warns(C.CacheWriteWarning, match="could not write"):
        out = extract_features(ep, "ramp-cache", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(out["joint"].data, np.stack([np.arange(5), 2 * np.arange(5) + 1.0], 1))
    assert not list(tmp_path.rglob("*.h5")) and not list(tmp_path.rglob(".tmp-*"))
