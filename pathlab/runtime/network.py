"""Is a server reachable? One socket connect, before a library retries for minutes.

huggingface_hub retries a weights download with back-off for about a minute offline; MLflow's
HTTP client retries an unreachable tracking server for over four minutes (5 retries, 8-128 s
apart) and then raises a chain of tracebacks. One connect says the same in milliseconds to
seconds. A proxy is not probed: the direct connect would fail where the proxy works."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

PROXY_VARIABLES = {
    "https": ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"),
    "http": ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"),
}


def unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why `url`'s host cannot be reached, as "host:port: reason" (None: it can, or it is not an
    http(s) URL, or a proxy carries it)."""
    parts = urlparse(url)
    if parts.scheme not in PROXY_VARIABLES or not parts.hostname:
        return None
    if any(os.environ.get(key) for key in PROXY_VARIABLES[parts.scheme]):
        return None
    host, port = parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or type(exc).__name__}"
    return None
