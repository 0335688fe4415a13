"""Feature cache entries: round trip in float16, key separation, unreadable entries."""

from __future__ import annotations

import json

import numpy as np
import torch

from zeroseg.eval.cache import FeatureCache, hash_key


def test_round_trip_float16_and_integer_tensors(tmp_path):
    cache = FeatureCache(tmp_path)
    key = {"model": "m", "image_size": 64, "timestep": 300}
    capture = {"attn_8": torch.rand(64, 64), "ids": torch.arange(5)}
    path = cache.put(key, "a/b", capture)
    assert path.name == "a_b.npz" and path.parent.name == hash_key(key)[:24]
    assert json.loads((path.parent / "key.json").read_text()) == key
    loaded = cache.get(key, "a/b")
    assert loaded["attn_8"].dtype == torch.float32
    assert torch.allclose(loaded["attn_8"], capture["attn_8"].half().float())
    assert torch.equal(loaded["ids"], capture["ids"])
    assert np.load(path)["attn_8"].dtype == np.float16  # stored compressed in float16


def test_changed_key_misses_and_corrupt_entry_is_ignored(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.put({"timestep": 300}, "x", {"f": torch.ones(2)})
    assert cache.get({"timestep": 301}, "x") is None
    path = cache.path({"timestep": 300}, "x")
    path.write_bytes(b"not a zip")
    assert cache.get({"timestep": 300}, "x") is None
    assert (cache.hits, cache.misses) == (0, 2)
