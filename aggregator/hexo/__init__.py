"""The seed/Hexo post format (render/parse, byte for byte) and the files in and
out: export writes stored posts, replay reads post files back in.

The entry points below are exported lazily (PEP 562): importing one module of
this package must not load the others (start-up stays small).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aggregator.hexo.export import export_posts
    from aggregator.hexo.post import Post
    from aggregator.hexo.replay import replay

__all__ = [
    "Post",
    "export_posts",
    "replay",
]

_EXPORTS = {
    "Post": "aggregator.hexo.post",
    "export_posts": "aggregator.hexo.export",
    "replay": "aggregator.hexo.replay",
}


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
