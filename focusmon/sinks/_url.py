"""How a sink names the URL it sends to, in logs and errors: without its secrets."""

from __future__ import annotations

import urllib.parse


def shown(url: str) -> str:
    """``url`` as logs show it: scheme, host, port and path; no user info, no query."""
    parts = urllib.parse.urlsplit(url)
    secret, _, where = parts.netloc.rpartition("@")  # host[:port] as written, even bad
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{'***@' if secret else ''}{where}{parts.path}{query}"
