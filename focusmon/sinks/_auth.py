"""Who may look at the live page: HTTP basic auth against a file of salted scrypt hashes.

The file (``--web-users FILE``, written by ``focusmon web-user add NAME``) has one user a
line, ``NAME:scrypt$N$r$p$SALT$HASH`` (salt and hash in base64): no password is stored,
and each has its own 16-byte salt. A page polls several times a second, and scrypt takes
tens of milliseconds by design, so a login verified once is remembered for
`REMEMBER_S` as an HMAC of the name and password under a key made at start (the process
never keeps a password, nor a hash an offline guesser could use).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from .._errors import ConfigError

#: scrypt's cost: 2^14 x 8 x 1 (16 MiB, ~50 ms a check), the usual interactive setting.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
#: How long a verified login is remembered (seconds).
REMEMBER_S = 300.0
_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_ENTRY = re.compile(r"scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")


def check_name(name: str) -> str:
    """A user's name: 1 to 64 letters, digits, ``. _ @ -`` (ConfigError otherwise)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"a web user's name is 1 to 64 letters, digits, '.', '_', '@' or '-', got {name!r}"
        )
    return name


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$SALT$HASH`` of ``password`` with a new random salt."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R,
                            p=SCRYPT_P, maxmem=64 * 2**20, dklen=32)  # fmt: skip
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` is the one ``encoded`` (`hash_password`) was made of."""
    match = _ENTRY.fullmatch(encoded)
    if match is None:
        return False
    n, r, p = (int(v) for v in match.groups()[:3])
    try:
        salt, want = (base64.b64decode(v, validate=True) for v in match.groups()[3:])
        got = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                             maxmem=256 * 2**20, dklen=len(want))  # fmt: skip
    except (ValueError, binascii.Error, MemoryError):
        return False
    return hmac.compare_digest(got, want)


def read_users(path: str | Path) -> dict[str, str]:
    """The users of a ``--web-users`` file: name -> encoded hash. Blank lines and ``#``
    comments are skipped; ConfigError names a malformed line (never showing it: it may
    hold a password typed in by hand)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read --web-users file {path}: {exc.strerror}") from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, encoded = line.partition(":")
        if not sep or not _NAME.fullmatch(name) or not _ENTRY.fullmatch(encoded):
            raise ConfigError(
                f"--web-users file {path}, line {number}: not NAME:scrypt$N$r$p$SALT$HASH "
                "(write it with `focusmon web-user add NAME`)"
            )
        users[name] = encoded
    if not users:
        raise ConfigError(f"--web-users file {path} has no user: add one with "
                          "`focusmon web-user add NAME --file FILE`")  # fmt: skip
    return users


def add_user(path: str | Path, name: str, password: str) -> bool:
    """Add ``name`` to the file at ``path`` (made, mode 0600, if missing), or give it a new
    password; returns whether it was new. The file is replaced whole (a reader never sees
    half of it)."""
    check_name(name)
    if not password:
        raise ConfigError("a web user's password cannot be empty")
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    entry, new = f"{name}:{hash_password(password)}", True
    for k, line in enumerate(lines):
        if line.partition(":")[0].strip() == name:
            lines[k], new = entry, False
    if new:
        lines.append(entry)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(temporary, path)
    return new


class BasicAuth:
    """Checks ``Authorization: Basic ...`` headers against ``users`` (name -> hash)."""

    def __init__(self, users: Mapping[str, str], *, clock=time.monotonic) -> None:
        self._users = dict(users)
        self._key = secrets.token_bytes(32)
        self._remembered: dict[bytes, float] = {}  # HMAC(name, password) -> until
        self._lock = threading.Lock()
        self._clock = clock

    def allows(self, header: str | None) -> bool:
        """Whether ``header`` (the request's Authorization, or None) names a user with
        the right password."""
        if not header or not header[:6].lower() == "basic ":
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return False
        name, sep, password = decoded.partition(":")
        encoded = self._users.get(name)
        if not sep or encoded is None:
            return False
        token = hmac.new(self._key, decoded.encode("utf-8"), hashlib.sha256).digest()
        now = self._clock()
        with self._lock:
            if self._remembered.get(token, 0.0) > now:
                return True
        if not verify_password(password, encoded):
            return False
        with self._lock:
            if len(self._remembered) > 1024:  # bounded: forget the expired, then all
                self._remembered = {k: v for k, v in self._remembered.items() if v > now}
                if len(self._remembered) > 1024:
                    self._remembered.clear()
            self._remembered[token] = now + REMEMBER_S
        return True
