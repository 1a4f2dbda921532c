"""What a URL may show of itself in logs, tables and pages.

Feeds behind basic auth carry ``user:password@`` in their URL.  Every place
that prints a URL (log lines, ``aggregator status``, the metrics, the
operator's page) shows it through :func:`redact_url`, so the rule lives
here, below every layer that prints, rather than in the fetcher.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_url"]


def redact_url(url: str) -> str:
    """Drop ``user:password@``: feeds behind basic auth carry it, logs must not."""
    if "@" not in url:  # the usual case, and called for every poll
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
