"""The Hugging Face hub side of loading: the local cache first, a quick reachability check, a minimal download.

A model already in the local cache is loaded from there without any network request. Otherwise the hub endpoint
is probed with a short timeout before anything is downloaded, so a machine without network fails in seconds
with a line saying so (instead of the hub client's retries ending in a message that blames the model), and only
the files the model family needs are fetched (one weight set per component, see :mod:`zeroseg.backbones.weights`).
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from zeroseg.errors import WeightsNotFoundError, one_line

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"


class HubUnreachableError(WeightsNotFoundError):
    """The model is not in the local cache and the hub cannot be reached."""


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids network access (read at call time, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    """The hub address: ``HF_ENDPOINT`` (read at call time) or huggingface.co."""
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or DEFAULT_ENDPOINT


def cached_snapshot(repo: str, revision: str | None) -> Path | None:
    """The local cache folder of ``repo`` at ``revision``, or ``None`` when it was never downloaded."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def unreachable_message(model: str, repo: str, reason: str) -> str:
    """The one line shown when the hub cannot be reached: what failed and the two ways out."""
    return (
        f"model `{model}` ({repo}): the Hugging Face hub ({hub_endpoint()}) could not be reached ({reason}) and "
        f"the model is not in the local cache; download it elsewhere (`huggingface-cli download {repo}`) and "
        f"pass its folder with --model /path/to/model, or set HF_HUB_OFFLINE=1 if it is in the cache"
    )


def check_reachable(model: str, repo: str, *, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`HubUnreachableError` unless the hub endpoint answers within ``timeout`` seconds.

    Any HTTP answer counts (even an error status): the point is whether a download could start. Proxies from
    the environment (``HTTPS_PROXY``, ``NO_PROXY``) are honoured as the hub client honours them.
    """
    endpoint = hub_endpoint()
    request = urllib.request.Request(f"{endpoint}/api/models/{repo}", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 - the configured hub endpoint
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        text = f"no answer within {timeout:g} s" if isinstance(reason, TimeoutError) else one_line(reason)
        raise HubUnreachableError(unreachable_message(model, repo, text)) from None


def repo_files(repo: str, revision: str | None) -> list[str]:
    """Every file path of the hub repository at ``revision``."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint()).list_repo_files(repo, revision=revision)


def download(repo: str, files: list[str], revision: str | None) -> Path:
    """Fetch exactly ``files`` of the repository into the local cache and return the snapshot folder."""
    from huggingface_hub import snapshot_download

    logger.info("downloading %d files of %s", len(files), repo)
    return Path(snapshot_download(repo, revision=revision, allow_patterns=files, endpoint=hub_endpoint()))


def is_connection_error(exc: BaseException) -> bool:
    """Whether a hub client error means the network failed (as opposed to a missing repository or file)."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if isinstance(exc, HfHubHTTPError):
        return False
    if isinstance(exc, (LocalEntryNotFoundError, ConnectionError, TimeoutError)):
        return True
    try:
        import httpx
    except ImportError:  # pragma: no cover - the hub client depends on httpx
        return False
    return isinstance(exc, httpx.TransportError)
