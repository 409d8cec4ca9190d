"""Text from outside (a stream's name, a file's metadata) made safe to show a person."""

from __future__ import annotations

import unicodedata


def printable(text: str) -> str:
    """``text`` with its control and format characters escaped (``\\n``, ``\\x1b``,
    ``\\u202e``): a stream named with a newline cannot forge a log line, nor one with ANSI
    escapes colour the terminal or a right-to-left mark reverse what follows.

    >>> printable("door\\n2026-01-01 focusmon: INFO: all is well\\x1b[31m")
    'door\\\\n2026-01-01 focusmon: INFO: all is well\\\\x1b[31m'
    """
    if text.isprintable():
        return text
    return "".join(
        c if c == " " or unicodedata.category(c)[0] not in "CZ" else _escaped(c) for c in text
    )


def _escaped(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii")
