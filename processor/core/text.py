"""Text as PostgreSQL's ``text`` takes it: no NUL, no unpaired surrogate."""

from __future__ import annotations

import re

SURROGATE = re.compile("[\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` as PostgreSQL's text takes it: NUL and unpaired surrogates escaped.

    For messages that quote what they did not make (a transform's exception, a decoder's
    error): a dead letter's error is a text column too.
    """
    if "\x00" not in text and (text.isascii() or not SURROGATE.search(text)):
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()
