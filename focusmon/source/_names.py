"""What may be shown of a source: its name, never its credentials.

A list of secret-looking words cannot win: passwords hold quotes, spaces and tabs, and
secrets travel in query keys of every name (``?pw=``, ``?jwt=``, an encoded
``pass%77ord=``), in path parameters (``;password=``) and fragments (``#token=``). So a
source is named by what is safe to show — its scheme, host, port and path — and its user
info, path parameters, query and fragment are shown as ``***`` (named query keys may be
let through). Text that may hold a source's URL (an FFmpeg error) is cleaned of that
source's secret parts, found by the same parsing (`Scrubber`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
HIDDEN = "***"


@dataclass(frozen=True)
class UrlParts:
    """A URL split as FFmpeg splits it: the user info runs to the last ``@`` before the
    path, so a password may hold ``@``, quotes or white space."""

    scheme: str
    userinfo: str | None
    host: str  # host and port
    path: str  # with its path parameters
    query: str | None
    fragment: str | None


def split_url(spec: str) -> UrlParts | None:
    """The parts of ``spec``, or None if it is not a URL (a file, a device, ``demo``)."""
    match = _SCHEME.match(spec)
    if match is None:
        return None
    rest = spec[match.end() :]
    # The authority ends at the path, query or fragment that follows the last '@' (FFmpeg
    # takes the last '@' before the first '/' or '?': a password with '/' is not a URL).
    ends = [i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0]
    end = min(ends) if ends else len(rest)
    authority, tail = rest[:end], rest[end:]
    userinfo = None
    if "@" in authority:
        userinfo, _, authority = authority.rpartition("@")
    tail, hash_, fragment = tail.partition("#")
    path, mark, query = tail.partition("?")
    return UrlParts(
        match.group(1), userinfo, authority, path, query if mark else None,
        fragment if hash_ else None,
    )  # fmt: skip


def safe_name(spec: str, show_query_keys: Iterable[str] = ()) -> str:
    """``spec`` as it may be shown: a URL's scheme, host, port and path; its user info,
    path parameters, query and fragment as ``***`` (the query keys in
    ``show_query_keys`` keep their values). Anything else is shown as it is.

    >>> safe_name("rtsp://admin:p'a ss@cam:554/live;auth=x?token=abc&ch=1#t=2", ["ch"])
    'rtsp://***@cam:554/live;***?***&ch=1#***'
    """
    parts = split_url(spec)
    if parts is None:
        return spec
    shown = f"{parts.scheme}://"
    if parts.userinfo is not None:
        shown += f"{HIDDEN}@"
    host = parts.host
    if not _plain_host(host):  # not a host[:port]: shown as no more than hidden
        host = HIDDEN
    shown += host + _safe_path(parts.path)
    if parts.query is not None:
        shown += "?" + _safe_query(parts.query, set(show_query_keys))
    if parts.fragment is not None:
        shown += f"#{HIDDEN}"
    return shown


_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]*)(:\d*)?$")


def _plain_host(host: str) -> bool:
    return _HOST.match(host) is not None


def _safe_path(path: str) -> str:
    """``path`` with each segment's ``;parameters`` as ``;***``."""
    return "/".join(
        segment.partition(";")[0] + (f";{HIDDEN}" if ";" in segment else "")
        for segment in path.split("/")
    )


def _safe_query(query: str, shown: set[str]) -> str:
    """``***`` for the query, but for the keys in ``shown`` with their values."""
    if not shown:
        return HIDDEN
    kept = [
        f"{key}={value}"
        for key, value in parse_qsl(query, keep_blank_values=True)
        if key in shown and _plain_value(value)
    ]
    hidden = any(
        key not in shown or not _plain_value(value)
        for key, value in parse_qsl(query, keep_blank_values=True)
    )
    return "&".join(([HIDDEN] if hidden or not kept else []) + kept)


def _plain_value(value: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9._~-]*", value) is not None


def secrets_of(spec: str) -> list[str]:
    """The parts of ``spec`` that must never be shown, longest first: the whole URL, its
    user info and password, its path parameters, query and fragment."""
    parts = split_url(spec)
    if parts is None:
        return []
    found = {spec}
    if parts.userinfo:
        found.add(parts.userinfo)
        password = parts.userinfo.partition(":")[2]
        if len(password) >= 4:  # shorter ones would blot out common letters
            found.add(password)
    for segment in parts.path.split("/"):
        params = segment.partition(";")[2]
        if params:
            found.add(params)
    for part in (parts.query, parts.fragment):
        if part:
            found.add(part)
    return sorted(found, key=len, reverse=True)


class Scrubber:
    """Removes the secrets of the sources it knows from text: each source's whole URL
    becomes its safe name, then any secret part left (a password FFmpeg quoted alone)
    becomes ``***``."""

    def __init__(self, specs: Iterable[str] = ()) -> None:
        self._urls: dict[str, str] = {}
        self._parts: set[str] = set()
        for spec in specs:
            self.add(spec)

    def add(self, spec: str, show_query_keys: Iterable[str] = ()) -> None:
        secrets = secrets_of(spec)
        if secrets:
            self._urls[spec] = safe_name(spec, show_query_keys)
            self._parts.update(s for s in secrets if s != spec)

    def add_secret(self, secret: str) -> None:
        """Hide ``secret`` itself wherever it shows (a value from the environment)."""
        if secret:
            self._parts.add(secret)

    def __call__(self, text: str) -> str:
        for url in sorted(self._urls, key=len, reverse=True):
            text = text.replace(url, self._urls[url])
        for part in sorted(self._parts, key=len, reverse=True):
            text = text.replace(part, HIDDEN)
        return text


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*")


def redact(text: str) -> str:
    """``text`` with every URL in it shown by its safe name (as far as a URL can be told
    apart in free text: where the source is known, `Scrubber` is exact).

    >>> redact("cannot open rtsp://admin:hunter2@cam/live?token=abc")
    'cannot open rtsp://***@cam/live?***'
    """
    return _URL_IN_TEXT.sub(lambda m: safe_name(m.group(0)), text)
