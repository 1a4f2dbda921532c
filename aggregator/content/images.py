"""Archive a post's images so they survive hotlink protection (``images: archive``).

Many Chinese image hosts answer 403 (or a "no hotlinking" placeholder) when the
Referer is a foreign site.  The default, ``images: remote``, keeps the remote
URLs and relies on the ``referrerpolicy="no-referrer"`` that
:mod:`aggregator.content.clean` puts on every ``<img>``.  ``images: archive`` fetches
every image at ingest instead -- each ``<img src>`` of the body, and the post's
headimg/thumbnail -- and stores it content-addressed as
``<images_dir>/<sha256>.<ext>``; the post then points at ``/images/<sha256>.<ext>``.

Design decisions:

* **Where**: ``images_dir`` is ``<export_dir>/../images``.  The export dir is a
  Hexo ``source/_posts``, so images land in ``source/images`` and Hexo serves
  them at ``/images/``.  The post refers to them by the root-relative path
  ``/images/<sha>.<ext>``: a relative path would depend on the blog's
  permalink scheme (``/2024/01/02/slug/`` vs ``/slug.html``), the absolute
  path does not.  (A blog under a sub-path, Hexo ``root: /blog/``, needs the
  ``url_prefix`` argument changed.)
* **Already archived**: the URL -> file mapping is kept on the filesystem, next
  to the images: ``<images_dir>/.by-url/<sha256 of the URL>`` holds the file
  name (``<sha>.<ext>``).  An image is fetched again only when its index entry
  or the image file itself is gone, so deleting ``images/`` re-archives
  everything and nothing can point at a file that is not there.  A dead image
  is recorded in the same index as ``error <unix time> <reason>`` and is not
  retried for :data:`RETRY_FAILED_AFTER` (an unchanged post is rebuilt every
  poll; without this a dead image would be requested every poll).
* **Limits**: the fetcher's (timeouts, redirects, 16 MiB), plus
  ``max_image_bytes``; the content type must be one of the raster types in
  :data:`EXTENSIONS` (SVG is refused: served from the blog's own origin it
  could run script when opened directly).
* **Referer**: per host, ``none`` (send none; the default), ``origin`` (the
  image's own origin, ``https://host/``, which most anti-hotlinking rules
  accept) or an explicit URL; a rule for ``sinaimg.cn`` also covers
  ``wx1.sinaimg.cn`` (the longest matching rule wins).
* **Rewriting** uses :mod:`aggregator.content.clean`'s tokenizer: only the bytes of a
  ``src`` value change; every other byte of the body is kept.  ``srcset`` is
  left as it is (browsers that use it load the remote candidates, with no
  Referer, as in ``images: remote``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from aggregator.config.spec import DEFAULT_MAX_IMAGE_BYTES
from aggregator.content.clean import (
    _IMAGE_TAGS,
    _attribute_value,
    _decode_attribute,
    _Tag,
    _tokens,
    _usable_image,
)
from aggregator.errors import AggregatorError
from aggregator.hexo.post import Post
from aggregator.policy.urls import redact_url

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "EXTENSIONS",
    "IMAGE_ACCEPT",
    "ArchiveResult",
    "Download",
    "Downloaded",
    "ImageUnavailable",
    "archive_images",
    "archived_mapping",
    "find_image_urls",
    "referer_for",
    "rewrite_post",
    "rewrite_srcs",
]

log = logging.getLogger(__name__)

#: A dead image is asked for again after this long (seconds).
RETRY_FAILED_AFTER = 24 * 3600
#: Images fetched at once for one feed (the fetcher's per-host limits apply too).
IMAGE_CONCURRENCY = 4
IMAGE_ACCEPT = "image/avif,image/webp,image/png,image/jpeg,image/gif,image/*;q=0.8"
DEFAULT_URL_PREFIX = "/images/"
INDEX_DIR = ".by-url"

#: Content types archived, and the file extension each gets.
EXTENSIONS: Mapping[str, str] = {
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/pjpeg": "jpg",
    "image/png": "png",
    "image/apng": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/avif": "avif",
    "image/bmp": "bmp",
    "image/x-icon": "ico",
    "image/vnd.microsoft.icon": "ico",
}


# --------------------------------------------------------------------------
# Pure helpers


def find_image_urls(body: str) -> list[str]:
    """Every usable (absolute http/https) ``<img src>`` of a cleaned body, in order, once."""
    found: dict[str, None] = {}
    if "<" not in body:
        return []
    for token in _tokens(body):
        if isinstance(token, _Tag) and not token.closing and token.name in _IMAGE_TAGS:
            src = _attribute_value(body, token, "src")
            if src is not None and _usable_image(src.strip()):
                found.setdefault(src.strip())
    return list(found)


def rewrite_srcs(body: str, mapping: Mapping[str, str]) -> str:
    """``body`` with each ``<img src>`` found in ``mapping`` replaced by its new URL.

    Only the characters of the ``src`` value change (the new URLs are plain
    paths, safe quoted or unquoted); the original string comes back when
    nothing matched.  Only the first ``src`` of a tag counts, as in browsers.
    """
    if not mapping or "<" not in body:
        return body
    out: list[str] = []
    pos = 0
    for token in _tokens(body):
        if not (isinstance(token, _Tag) and not token.closing and token.name in _IMAGE_TAGS):
            continue
        for attr in token.attrs:
            if attr.name != "src":
                continue
            if attr.value_start >= 0:
                value = _decode_attribute(body[attr.value_start : attr.value_end]).strip()
                new = mapping.get(value)
                if new is not None:
                    out.append(body[pos : attr.value_start])
                    out.append(new)
                    pos = attr.value_end
            break
    if pos == 0:
        return body
    out.append(body[pos:])
    return "".join(out)


def post_image_urls(post: Post) -> list[str]:
    """The URLs ``images: archive`` fetches for one post: header images, then the body's."""
    urls = dict.fromkeys(u for u in (post.headimg, post.thumbnail) if _usable_image(u))
    urls.update(dict.fromkeys(find_image_urls(post.body)))
    return list(urls)


def rewrite_post(post: Post, mapping: Mapping[str, str]) -> Post:
    """The post with archived images pointing at their archived path (same object if none)."""
    if not mapping:
        return post
    body = rewrite_srcs(post.body, mapping)
    headimg = mapping.get(post.headimg, post.headimg)
    thumbnail = mapping.get(post.thumbnail, post.thumbnail)
    if body is post.body and headimg == post.headimg and thumbnail == post.thumbnail:
        return post
    return replace(post, body=body, headimg=headimg, thumbnail=thumbnail)


def _host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return ""


def referer_for(url: str, rules: Mapping[str, str]) -> str | None:
    """The Referer to send for ``url`` under ``rules`` (host -> ``none``/``origin``/URL).

    The rule of the host itself, else of its longest parent domain listed;
    no rule means ``none``.  ``origin`` is the image's own origin with a
    trailing slash.
    """
    host = _host_of(url)
    labels = host.split(".")
    for i in range(len(labels)):
        rule = rules.get(".".join(labels[i:]))
        if rule is not None:
            break
    else:
        return None
    if rule == "none":
        return None
    if rule == "origin":
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/"
    return rule


# --------------------------------------------------------------------------
# The archive on disk


def _index_path(images_dir: Path, url: str) -> Path:
    return images_dir / INDEX_DIR / hashlib.sha256(url.encode("utf-8")).hexdigest()


def _lookup(images_dir: Path, url: str, now: float) -> tuple[str | None, str | None]:
    """``(name, None)`` if archived, ``(None, reason)`` if it failed lately, else both None."""
    try:
        text = _index_path(images_dir, url).read_text("utf-8").strip()
    except OSError:  # not archived, or unreadable: fetch it (storing reports disk trouble)
        return None, None
    if text.startswith("error "):
        _, stamp, reason = [*text.split(" ", 2), "", ""][:3]
        try:
            if now - float(stamp) < RETRY_FAILED_AFTER:
                return None, reason or "failed earlier"
        except ValueError:
            pass
        return None, None
    if text and "/" not in text and (images_dir / text).is_file():
        return text, None
    return None, None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        tmp.chmod(0o644)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _store(images_dir: Path, url: str, data: bytes, ext: str) -> str:
    name = f"{hashlib.sha256(data).hexdigest()}.{ext}"
    target = images_dir / name
    if not target.is_file():  # content-addressed: same name, same bytes
        _write_atomic(target, data)
    _write_atomic(_index_path(images_dir, url), name.encode("ascii"))
    return name


def _record_failure(images_dir: Path, url: str, reason: str, now: float) -> None:
    line = f"error {now:.0f} {' '.join(reason.split())}"
    with contextlib.suppress(OSError):
        _write_atomic(_index_path(images_dir, url), line.encode("utf-8"))


def archived_mapping(
    urls: Iterable[str], dest: Path, *, url_prefix: str = DEFAULT_URL_PREFIX
) -> dict[str, str]:
    """URL -> archived path for the ``urls`` already in the archive (no network).

    ``aggregator reprocess`` uses it so a re-derived post points at the same
    files as the fetched one did.
    """
    now = time.time()
    found = {url: _lookup(dest, url, now)[0] for url in dict.fromkeys(urls)}
    return {url: url_prefix + name for url, name in found.items() if name is not None}


@dataclass(slots=True)
class ArchiveResult:
    """URL -> path to use in the post, and URL -> why it was left remote."""

    mapping: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    fetched: int = 0


class _Refused(Exception):
    pass


class ImageUnavailable(AggregatorError):
    """A download gave no image (a dead link, a refused address, a limit).

    ``reason`` is short and is what the image index and the feed's report
    record, e.g. ``HTTP 404`` or ``address 10.0.0.1 is not public``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Downloaded(Protocol):
    """What a download returns: fetch's ``FetchResult`` fits."""

    @property
    def content(self) -> bytes: ...
    @property
    def content_type(self) -> str | None: ...


#: Fetches one image URL, sending these extra headers (a Referer), or raises
#: :class:`ImageUnavailable`.  The service builds it from the fetcher and the
#: address guard, so this stage holds no network client: it only decides
#: what to ask for and what to keep (tests/test_layers.py).
Download = Callable[[str, Mapping[str, str] | None], Awaitable[Downloaded]]


def _extension(content_type: str | None) -> str:
    if not content_type or not content_type.startswith("image/"):
        raise _Refused(f"not an image (Content-Type {content_type or 'missing'})")
    ext = EXTENSIONS.get(content_type)
    if ext is None:
        raise _Refused(f"unsupported image type {content_type}")
    return ext


async def archive_images(
    urls: Iterable[str],
    download: Download,
    dest: Path,
    rules: Mapping[str, str],
    *,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    url_prefix: str = DEFAULT_URL_PREFIX,
    clock: float | None = None,
) -> ArchiveResult:
    """Fetch and store each image not archived yet; never raises for an image.

    ``dest`` is the images directory; ``download`` fetches one URL (with
    the fetcher's limits and, unless the feed allows private networks, the
    address guard: image URLs come from the feed).
    """
    now = time.time() if clock is None else clock
    result = ArchiveResult()
    gate = asyncio.Semaphore(IMAGE_CONCURRENCY)

    async def one(url: str) -> None:
        name, earlier = await asyncio.to_thread(_lookup, dest, url, now)
        if name is not None:
            result.mapping[url] = url_prefix + name
            return
        if earlier is not None:
            result.failures[url] = f"{earlier} (not retried yet)"
            return
        referer = referer_for(url, rules)
        headers = {"Referer": referer} if referer else None
        try:
            async with gate:
                fetched = await download(url, headers)
            result.fetched += 1
            ext = _extension(fetched.content_type)
            if len(fetched.content) > max_bytes:
                raise _Refused(f"larger than the {max_bytes}-byte image limit")
            if not fetched.content:
                raise _Refused("empty body")
            name = await asyncio.to_thread(_store, dest, url, fetched.content, ext)
        except (ImageUnavailable, _Refused) as exc:
            reason = exc.reason if isinstance(exc, ImageUnavailable) else str(exc)
            result.failures[url] = reason
            log.warning("image kept remote: %s", reason, extra={"image": redact_url(url)})
            await asyncio.to_thread(_record_failure, dest, url, reason, now)
            return
        except OSError as exc:  # the disk, not the image: keep the remote URL, retry later
            result.failures[url] = f"cannot store the image: {exc.strerror or exc}"
            log.warning("image kept remote: %s", result.failures[url])
            return
        result.mapping[url] = url_prefix + name

    await asyncio.gather(*(one(u) for u in dict.fromkeys(urls)))
    return result
