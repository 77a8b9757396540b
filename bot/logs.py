"""Structured (logfmt) logging with personal data masked before anything is written."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

# Mainland mobile numbers: 11 digits starting 13-19, not inside a longer digit run.
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
# What every match of _PHONE contains. Its leading literal lets the regex engine skip ahead,
# where _PHONE's lookbehind tries every position: a line without a candidate (nearly all of
# them) is cleared about twenty times faster.
_CANDIDATE = re.compile(r"1[3-9]\d{9}")
_NEEDS_QUOTES = re.compile(r'[\s"=]')


def mask_phone_numbers(text: str) -> str:
    """Replace the middle four digits of every mobile number with asterisks."""
    if _CANDIDATE.search(text) is None:
        return text
    return _PHONE.sub(r"\1****\3", text)


def mask_openid(openid: str) -> str:
    """Keep enough of an openid to correlate log lines, not enough to address a member."""
    return f"{openid[:4]}…{openid[-4:]}" if len(openid) > 10 else "…"


def _format_value(value: Any) -> str:
    # Strings first, and a tuple for isinstance: this runs for every field of every line.
    if type(value) is str:
        text = value
    elif isinstance(value, (int, float)):
        return str(value)
    else:
        text = str(value)
    if text and _NEEDS_QUOTES.search(text) is None:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class LogfmtFormatter(logging.Formatter):
    """``ts=… level=… logger=… msg=… key=value …`` on one line; ``extra`` fields become keys."""

    _RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _timestamp(self, created: float) -> str:
        # One strftime per second: a busy webhook logs thousands of lines in each.
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self._stamp

    def line(
        self, created: float, level: str, logger: str, msg: str, fields: dict[str, Any]
    ) -> str:
        """One line from its parts, masked: what ``format`` gives for such a record (the
        request log writes its lines with this, without a LogRecord)."""
        millis = int((created - int(created)) * 1000)
        head = (
            f"ts={self._timestamp(created)}.{millis:03d}Z level={level} logger={logger} "
            f"msg={_format_value(msg)}"
        )
        parts = [head]
        parts += [f"{key}={_format_value(value)}" for key, value in fields.items()]
        # One pass over the whole line: no field, message or traceback escapes the mask.
        return mask_phone_numbers(" ".join(parts))

    def format(self, record: logging.LogRecord) -> str:
        reserved = self._RESERVED
        fields = {
            key: value
            for key, value in record.__dict__.items()
            if key not in reserved and key[0] != "_"
        }
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return self.line(
            record.created, record.levelname.lower(), record.name, record.getMessage(), fields
        )


def setup_logging(level: str = "INFO") -> None:
    """Send every log line through the logfmt formatter on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log would duplicate our per-request line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The schema check at start-up would otherwise log Alembic's dialect chatter.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # APScheduler logs every run at INFO; scheduler/runs.py logs each run once, with its outcome.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
