"""Hiding credentials in text meant for people (errors, logs): a password in any URL
(``scheme://user:password@host``), a token in a URL's user part, ``password=...`` in a
connection string."""

from __future__ import annotations

import re

__all__ = ["redact_secrets"]

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)[^\s@'\"]*@")
_URL_TOKEN = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)[^\s:/@'\"]+@")
_KEY_VALUE = re.compile(r"(?i)(?P<head>\b(?:password|passwd|pwd|token|secret)\s*[=:]\s*)[^\s,;'\"&]+")


def redact_secrets(text: str) -> str:
    """``text`` with every credential it visibly carries replaced by ``***``."""
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    text = _URL_TOKEN.sub(r"\g<head>***@", text)
    return _KEY_VALUE.sub(r"\g<head>***", text)
