"""Logging set-up: readable lines on a terminal, JSON lines for collectors.

Extra fields given with ``logger.info(..., extra={...})`` (feed, status, new,
duplicate, bytes, ms) appear as keys in JSON mode and are appended as
``key=value`` in text mode, so one log call serves both.

Log lines quote feeds (GUIDs, titles, error messages), and a feed can put a
newline in any of them to forge a line of its own.  So the formatters
escape, rather than every call site: in text mode the message and every
extra value are kept on their line (controls, line separators and lone
surrogates written as ``\\n``, ``\\x1b``, ``\\u2028`` ...), and a traceback's
lines are indented, so none of them can pass for a record; in JSON mode the
string values are escaped the same way before encoding, so a collector that
decodes the JSON does not get the newline back either.
"""

from __future__ import annotations

import functools
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aggregator.policy.repair import escape_for_log

if TYPE_CHECKING:
    from pythonjsonlogger.json import JsonFormatter

__all__ = ["TextFormatter", "configure_logging", "json_line_formatter"]

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
#: How the lines of a traceback start in text mode: never where a record does.
_CONTINUATION = "    "


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``, one line per record (bar tracebacks)."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape_for_log(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if extras:
            line += " " + " ".join(f"{k}={escape_for_log(str(v))}" for k, v in extras.items())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for block in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)):
            if block:
                line += "".join(
                    "\n" + _CONTINUATION + escape_for_log(part) for part in block.split("\n")
                )
        return line


@functools.cache
def json_line_formatter() -> type[JsonFormatter]:
    """The JSON formatter's class, built on first use.

    python-json-logger (and the json module under it) is imported only by
    a process that logs JSON: every command configures logging, and most
    write text (``--help`` and ``status`` among them, which must start fast).
    """
    from pythonjsonlogger.json import JsonFormatter

    class JsonLineFormatter(JsonFormatter):
        """python-json-logger's records with every string value escaped (tracebacks excepted).

        ``time`` is ISO 8601 in UTC with its offset (``2026-12-03T08:02:41.281+00:00``),
        which log shippers parse without being told a format or a zone.
        """

        def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
            return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

        def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
            return {
                key: escape_for_log(value)
                if isinstance(value, str) and key not in ("exc_info", "stack_info")
                else value
                for key, value in super().process_log_record(log_data).items()
            }

    return JsonLineFormatter


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send the project's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            json_line_formatter()(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time"},
                # ASCII only: whatever a value holds, the line is one line.
                json_ensure_ascii=True,
            )
        )
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries speak up only when something is wrong.
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
