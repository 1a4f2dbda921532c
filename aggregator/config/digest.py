"""The digest of a feeds.yaml's bytes, apart from the loader so that reading it is cheap.

``load_config`` records it on the :class:`~aggregator.config.feeds.Config`;
``aggregator fetch`` compares it, through :mod:`aggregator.store.lite`, with
the one recorded by the last pass that had nothing to poll, without loading
ruamel and pydantic (see that module's "sync marker").
"""

from __future__ import annotations

import hashlib

__all__ = ["config_digest"]


def config_digest(data: bytes) -> str:
    """blake2b-128 of the file's bytes, as hex."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()
