"""Entry -> post: HTML clean-up, full text, the post image, archived images,
and the per-item stage that builds what the store ingests.

The entry points below are exported lazily (PEP 562): importing one module of
this package must not load the others (start-up stays small).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aggregator.content.clean import entry_to_post
    from aggregator.content.items import build_items

__all__ = [
    "build_items",
    "entry_to_post",
]

_EXPORTS = {
    "build_items": "aggregator.content.items",
    "entry_to_post": "aggregator.content.clean",
}


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
