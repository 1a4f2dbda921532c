"""Charts as inline SVG, drawn on the server: no script, no CDN, nothing to load.

Only numbers from our own queries and labels passed through
:func:`markupsafe.escape` go into the markup, and colours are presentation
attributes (``fill=``), not ``style=``, so the page's Content-Security-Policy
can forbid inline styles.  Each chart carries ``role="img"`` and a
``<title>`` so it reads as one picture with a text equivalent, and
``data-*`` attributes with its totals so tests (and scripts) can check that
it shows data without parsing paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup, escape

__all__ = ["hourly_chart", "sparkline"]

_BAR = "#4c78a8"
_FAIL = "#e45756"
_NEW = "#54a24b"
_AXIS = "#999999"


def sparkline(
    values: Sequence[int], *, width: int = 90, height: int = 20, label: str = ""
) -> Markup:
    """Bars, one per value (new posts per day), scaled to the largest."""
    top = max(values, default=0)
    total = sum(values)
    n = max(len(values), 1)
    step = width / n
    bars = []
    for i, value in enumerate(values):
        if not value:
            continue
        h = max(1.0, value / top * (height - 1))
        bars.append(
            f'<rect x="{i * step:.1f}" y="{height - h:.1f}" width="{max(step - 0.6, 0.6):.1f}" '
            f'height="{h:.1f}" fill="{_BAR}"/>'
        )
    title = f"{label}: {total} new posts in {len(values)} days, at most {top} a day"
    return Markup(
        f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'data-total="{total}" data-days="{len(values)}">'
        f"<title>{escape(title)}</title>"
        f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" stroke="#dddddd"/>'
        + "".join(bars)
        + "</svg>"
    )


def hourly_chart(
    hours: Sequence[datetime],
    polls: Sequence[int],
    failed: Sequence[int],
    new: Sequence[int],
    *,
    width: int = 720,
    height: int = 160,
) -> Markup:
    """Polls per hour as bars (failed polls in red on top), new posts as a line."""
    left, right, top_pad, bottom = 44, 44, 10, 22
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    n = max(len(hours), 1)
    step = plot_w / n
    peak = max(polls, default=0) or 1
    peak_new = max(new, default=0) or 1
    parts: list[str] = []
    for i, (count, bad) in enumerate(zip(polls, failed, strict=True)):
        x = left + i * step + 1
        w = max(step - 2, 1)
        if count:
            h = count / peak * plot_h
            parts.append(
                f'<rect class="polls" x="{x:.1f}" y="{top_pad + plot_h - h:.1f}" '
                f'width="{w:.1f}" height="{h:.1f}" fill="{_BAR}"/>'
            )
        if bad:
            h = bad / peak * plot_h
            parts.append(
                f'<rect class="failed" x="{x:.1f}" y="{top_pad + plot_h - h:.1f}" '
                f'width="{w:.1f}" height="{h:.1f}" fill="{_FAIL}"/>'
            )
    points = " ".join(
        f"{left + (i + 0.5) * step:.1f},{top_pad + plot_h - value / peak_new * plot_h:.1f}"
        for i, value in enumerate(new)
    )
    if points:
        parts.append(
            f'<polyline class="new" points="{points}" fill="none" stroke="{_NEW}" '
            'stroke-width="2"/>'
        )
    base = top_pad + plot_h
    parts.append(
        f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" stroke="{_AXIS}"/>'
    )
    for i, start in enumerate(hours):
        if i % 3 == 0:
            parts.append(
                f'<text x="{left + (i + 0.5) * step:.1f}" y="{height - 6}" font-size="10" '
                f'text-anchor="middle" fill="#555555">{start:%H}:00</text>'
            )
    parts.append(
        f'<text x="{left - 6}" y="{top_pad + 9}" font-size="10" text-anchor="end" '
        f'fill="{_BAR}">{peak}</text>'
        f'<text x="{left - 6}" y="{base}" font-size="10" text-anchor="end" fill="{_BAR}">0</text>'
        f'<text x="{width - right + 6}" y="{top_pad + 9}" font-size="10" fill="{_NEW}">'
        f"{max(new, default=0)}</text>"
    )
    total_polls, total_failed, total_new = sum(polls), sum(failed), sum(new)
    title = (
        f"Last {len(hours)} hours (UTC): {total_polls} polls, {total_failed} failed, "
        f"{total_new} new posts"
    )
    return Markup(
        f'<svg class="hourly" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'data-polls="{total_polls}" data-failed="{total_failed}" data-new="{total_new}">'
        f"<title>{escape(title)}</title>" + "".join(parts) + "</svg>"
    )
