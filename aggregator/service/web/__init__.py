"""The operator's page: every feed's health, one feed's history, the newest posts.

Served by ``aggregator run --http`` beside ``/healthz`` and ``/metrics``
(:mod:`aggregator.service.server` mounts :class:`OperatorSite`'s routes on
the same aiohttp application).  The module doing the work is
:mod:`aggregator.service.web.site`; this one only names it, so importing
the package does not load Jinja2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aggregator.service.web.site import OperatorSite

__all__ = ["OperatorSite"]


def __getattr__(name: str) -> Any:
    if name == "OperatorSite":
        from aggregator.service.web.site import OperatorSite

        return OperatorSite
    raise AttributeError(name)
