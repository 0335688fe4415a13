"""Feature cache entries: lossless round trip of every dtype, the float16 opt-in, key separation, bad entries."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from zeroseg.errors import ConfigError
from zeroseg.eval.cache import FeatureCache, hash_key

_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape, strides and bits (NaN payloads and -0.0 included)."""
    bits = _BITS[a.element_size()]
    return a.dtype == b.dtype and a.stride() == b.stride() and torch.equal(a.view(bits), b.view(bits))


def _capture(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Random values with NaN, both infinities, -0.0 and the dtype's extremes, plus an integer tensor."""
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(64, 48, generator=generator).to(dtype)
    info = torch.finfo(dtype)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, info.max, info.tiny, info.eps])
    values.view(-1)[: special.numel()] = special.to(dtype)
    channels_last = values.reshape(4, 16, 48).permute(2, 0, 1)  # (C, h, w) with C fastest in memory
    return {"attn_8": values, "transposed": values.t(), "channels_last": channels_last, "ids": torch.arange(5)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_lossless_round_trip_is_bit_identical(tmp_path, dtype):
    cache = FeatureCache(tmp_path)
    key = {"model": "m", "image_size": 64, "timestep": 300}
    capture = _capture(dtype)
    path = cache.put(key, "a/b", capture)
    assert path.name == "a_b.npz" and path.parent.name == hash_key({**key, "storage": "lossless"})[:24]
    assert json.loads((path.parent / "key.json").read_text()) == {**key, "storage": "lossless"}
    loaded = cache.get(key, "a/b")
    assert set(loaded) == set(capture)
    for name, tensor in capture.items():
        assert _same_bits(loaded[name], tensor), name  # the captured memory layout too
    fresh = cache.as_stored(capture)  # what a run scores on a cache miss: the capture itself, no copy
    assert all(_same_bits(fresh[n], t) and fresh[n].data_ptr() == t.data_ptr() for n, t in capture.items())


def test_float16_storage_is_an_explicit_lossy_opt_in_with_its_own_key(tmp_path):
    key = {"model": "m"}
    capture = _capture(torch.float32)
    lossless, lossy = FeatureCache(tmp_path), FeatureCache(tmp_path, storage="float16")
    path = lossy.put(key, "x", capture)
    assert np.load(path)["attn_8"].dtype == np.float16  # half the disk
    assert lossless.get(key, "x") is None  # another key: a lossless run never reads float16 entries
    loaded = lossy.get(key, "x")
    assert loaded["attn_8"].dtype == torch.float32  # restored to the captured dtype
    finite = capture["attn_8"].isfinite() & capture["attn_8"].half().isfinite()
    assert torch.equal(loaded["attn_8"][finite], capture["attn_8"].half().float()[finite])
    assert torch.equal(loaded["ids"], capture["ids"])
    as_stored = lossy.as_stored(capture)
    assert all(_same_bits(as_stored[name], tensor) for name, tensor in loaded.items())  # fresh scored as cached
    with pytest.raises(ConfigError, match="`cache_storage` must be one of lossless, float16"):
        FeatureCache(tmp_path, storage="int8")


def test_entry_without_a_dtype_record_is_not_read(tmp_path):
    cache = FeatureCache(tmp_path)
    path = cache.put({"t": 1}, "x", {"f": torch.ones(2)})
    with zipfile.ZipFile(path, "w") as archive:  # an entry in the earlier format: arrays only
        with archive.open("f.npy", "w") as member:
            np.lib.format.write_array(member, np.ones(2, np.float16))
    assert cache.get({"t": 1}, "x") is None and cache.misses == 1


def test_changed_key_misses_and_corrupt_entry_is_ignored(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.put({"timestep": 300}, "x", {"f": torch.ones(2)})
    assert cache.get({"timestep": 301}, "x") is None
    path = cache.path({"timestep": 300}, "x")
    path.write_bytes(b"not a zip")
    assert cache.get({"timestep": 300}, "x") is None
    assert (cache.hits, cache.misses) == (0, 2)
