"""The error tree: every error aggregator raises on purpose is an AggregatorError.

Catch ``AggregatorError`` to handle anything the project reports, or one of
the classes below for one kind of trouble. Each message is written for the
person who has to act on it: what was refused, where (file and line, URL,
directory), and what to do. Every class also keeps the built-in base it
always had (``ValueError``, ``OSError``, ``RuntimeError``), so code that
caught those still works.

::

    AggregatorError
    ├── ConfigurationError             what the operator wrote cannot be used
    │   ├── config.feeds.ConfigError       feeds.yaml: every problem, file:line: key: message
    │   ├── config.edit.FeedsEditError     feeds.yaml cannot be edited safely (add, OPML import)
    │   ├── config.opml.OpmlError          an OPML file we cannot read
    │   └── store.engine.DatabaseURLError  a database URL that cannot be used
    ├── store.engine.SchemaNotReady    a read-only command found no schema, or another one
    ├── store.feeds.LeaseLost          a poll outlived its lease; its results were dropped
    ├── store.lite.LiteUnavailable     sqlite3's light read does not apply; the full path is taken
    ├── fetch.fetcher.FetchError       one request failed; ``reason`` says which limit or fault
    │   ├── FetchTimeout, FetchConnectError, BodyTooLarge, TooManyRedirects,
    │   ├── HTTPStatusError, ContentDecodingError
    │   └── ForbiddenAddress           a guarded fetch led to a non-public address
    ├── fetch.netguard.AddressRefused  the address guard refused a host (inside a connect)
    ├── parse.parser.FeedParseError    the bytes are not a feed
    ├── content.rawentry.RawEntryError   a stored raw entry cannot be read back
    ├── content.clean.ContentError     full text could not be extracted from a page
    ├── content.images.ImageUnavailable   an image could not be downloaded (kept remote)
    ├── hexo.post.PostFormatError      a post file in none of the accepted shapes (file:line)
    ├── hexo.export.ExportError        the export directory refused a file (also an OSError)
    ├── service.discover.DiscoveryError   no usable feed behind a URL (``aggregator add``)
    │   ├── NotAFeedError, NoFeedFound
    ├── service.publish.PublishError   a publisher cannot run as configured (no git repository)
    └── service.server.BindError       the HTTP server could not listen (also an OSError)

This module imports nothing, so the lowest layers (the post format, the
pure policies) can raise these too.
"""

from __future__ import annotations

__all__ = ["AggregatorError", "ConfigurationError"]


class AggregatorError(Exception):
    """The root of every error aggregator raises on purpose."""


class ConfigurationError(AggregatorError):
    """Input the operator wrote or pointed at (feeds.yaml, OPML, a database URL) is unusable."""
