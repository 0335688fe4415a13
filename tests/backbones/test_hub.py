"""Hub models without network: a fast, named failure; a cached model loads without touching the network.

The hub endpoint is pointed at 127.0.0.1 only: a closed port (connection refused) and a socket that accepts
connections but never answers. No traffic leaves the machine.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest

from zeroseg.backbones import HubUnreachableError, load_backbone
from zeroseg.errors import WeightsNotFoundError

BOUND_S = 15.0  # generous: the probe gives up after 3 s


class SilentServer:
    """A local TCP socket that accepts every connection and never replies; counts the connections."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.port = self.socket.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        for connection in self.connections:
            connection.close()
        self.socket.close()


def _closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


@pytest.fixture
def online_env(monkeypatch, tmp_path):
    """Network allowed (no HF_HUB_OFFLINE) and an empty hub cache in ``tmp_path``; returns the cache folder."""
    from huggingface_hub import constants

    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return cache


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


def _timed_failure(model: str) -> tuple[str, float]:
    start = time.perf_counter()
    with pytest.raises(HubUnreachableError) as info:
        load_backbone(model)
    return str(info.value), time.perf_counter() - start


def _assert_unreachable_line(message: str) -> None:
    assert "segmind/SSD-1B" in message and "could not be reached" in message
    assert "--model /path/to/model" in message and "HF_HUB_OFFLINE=1" in message and "\n" not in message


def test_closed_port_fails_fast_saying_the_hub_is_unreachable(online_env, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    message, elapsed = _timed_failure("ssd1b")
    _assert_unreachable_line(message)
    assert elapsed < BOUND_S


def test_silent_endpoint_fails_after_the_probe_timeout(online_env, monkeypatch, silent_server):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent_server.port}")
    message, elapsed = _timed_failure("ssd1b")
    _assert_unreachable_line(message)
    assert "no answer within" in message and elapsed < BOUND_S


def _cache_repo(cache, repo: str, source, commit: str = "0" * 40):
    """Lay ``source`` out as the hub client's cache of ``repo`` at ``main``."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    shutil.copytree(source, root / "snapshots" / commit)
    return root / "snapshots" / commit


def test_cached_model_loads_without_any_network_request(online_env, monkeypatch, silent_server, tiny_sdxl_path):
    _cache_repo(online_env, "someone/tiny-sdxl", tiny_sdxl_path)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent_server.port}")
    backbone = load_backbone("someone/tiny-sdxl")
    assert backbone.family == "sdxl" and backbone.model == "someone/tiny-sdxl"
    assert silent_server.connections == []


def test_partly_cached_model_offline_says_it_is_incomplete(online_env, monkeypatch, tiny_sd_path):
    snapshot = _cache_repo(online_env, "someone/tiny-sd", tiny_sd_path)
    shutil.rmtree(snapshot / "vae")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="incomplete") as info:
        load_backbone("someone/tiny-sd")
    assert "someone/tiny-sd" in str(info.value) and "\n" not in str(info.value)


def test_partly_cached_model_without_network_fails_fast(online_env, monkeypatch, tiny_sd_path):
    snapshot = _cache_repo(online_env, "segmind/SSD-1B", tiny_sd_path)
    shutil.rmtree(snapshot / "vae")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    message, elapsed = _timed_failure("ssd1b")
    _assert_unreachable_line(message)
    assert elapsed < BOUND_S
