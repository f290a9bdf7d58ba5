"""Credentials in URLs kept out of everything softmask writes or prints.

``rtsp://user:password@camera/stream`` becomes ``rtsp://user:***@camera/stream`` in reports,
manifests, log records and error lines; a user name alone (``rtsp://token@host``) may be the
secret itself and becomes ``***``.
"""

from __future__ import annotations

import logging
import re

# scheme://userinfo@ : userinfo runs up to the last '@' before the host's '/', '?' or '#'.
_USERINFO = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s@]*(?:@[^/?#\s@]*)*)@"
)


def _mask(match: re.Match) -> str:
    user, colon, _ = match.group("userinfo").partition(":")
    return f"{match.group('scheme')}{user}:***@" if colon else f"{match.group('scheme')}***@"


def redact(text: str) -> str:
    """``text`` with the password (or lone user name) of every URL in it replaced by ``***``."""
    return _USERINFO.sub(_mask, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts URL credentials in each record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def redact_logging() -> None:
    """Redact URL credentials in every record the root logger's handlers emit."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
