"""A local feed farm: N RSS 2.0 feeds x M items of Chinese news on 127.0.0.1.

Run as its own process (``python bench/farm.py --feeds 300 --items 20``) so
that serving thousands of requests never competes for the measured process's
GIL.  At start it

* binds a socket on 127.0.0.1 (port 0 = any free port),
* renders every feed's bytes once, from the posts in ``seeds/`` varied per
  feed and per item so that every item is unique content (its own guid, link,
  date, title and body text, hence its own content hash),
* gzips each feed once (served when the client accepts gzip, as news sites
  do; ``--no-gzip`` serves identity only),
* writes a JSON manifest (``--manifest``) naming every feed's URL, outlet and
  section, and prints one JSON line on stdout (the base URL, sizes, the build
  time) to say it is ready.

Then it serves until its standard input closes (the parent exited) or it gets
SIGTERM/SIGINT.  Feeds answer ``If-None-Match`` with 304 when the tag matches;
the ETag is a hash of the feed's bytes.  ``GET /_stats`` returns counters of
what was served since ``GET /_reset``, which the benchmark uses to check from
outside that a cold pass really fetched every feed (200) and a warm pass
really got nothing but 304s.

Only loopback is ever bound: ``127.0.0.1``, and with ``--hosts K`` also
``127.0.0.2`` ... ``127.0.0.K`` on the same port, so the feeds spread over K
distinct hosts (the fleet benchmark, bench/fleet.py, checks per-host
politeness).  ``--log PATH`` appends one line per feed request (Unix time,
host address, path, status, the client's port) for measurements from outside the daemons.  The
time is the kernel's: when the request's bytes reached the farm's socket
(SO_TIMESTAMPING, Linux), not when the farm's one event loop got round to
them, which on a busy machine can be tens of milliseconds later and would
make two requests look closer than they were sent (bench/fleet.py's spacing
check); where the kernel gives no stamp, the handler's clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import html
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``aggregator`` importable from the tree
    sys.path.insert(0, str(ROOT))

from aggregator.hexo.post import format_date, parse  # noqa: E402

__all__ = ["FarmFeed", "Material", "Seed", "build_farm", "load_seeds", "main", "render_feed"]

# Linux's SO_TIMESTAMPING and its flags (not in the socket module): software
# receive stamps, reported with each recvmsg as a control message.
_SO_TIMESTAMPING = 37
_TIMESTAMPING_RX = (1 << 3) | (1 << 4)  # SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE
_STAMP_SPACE = socket.CMSG_SPACE(48)  # struct scm_timestamping: three timespecs
#: Connection fd -> kernel time (Unix seconds) its last bytes arrived.
_ARRIVED: dict[int, float] = {}


class _StampedSocket(socket.socket):
    """An accepted connection that reads with recvmsg and keeps the kernel's
    receive time of what it read (the transport calls ``recv``)."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data, ancillary, _flags, _addr = self.recvmsg(bufsize, _STAMP_SPACE, flags)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPING and len(payload) >= 16:
                seconds, nanos = struct.unpack_from("qq", payload)
                if seconds:
                    _ARRIVED[self.fileno()] = seconds + nanos / 1e9
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        data = self.recv(nbytes or len(buffer), flags)
        memoryview(buffer)[: len(data)] = data
        return len(data)


class _StampingListener(socket.socket):
    """A listening socket whose connections are :class:`_StampedSocket`."""

    def accept(self) -> tuple[socket.socket, Any]:
        fd, address = self._accept()  # type: ignore[attr-defined]
        conn = _StampedSocket(self.family, self.type, self.proto, fileno=fd)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPING, _TIMESTAMPING_RX)
        return conn, address


def _listener(address: str, port: int) -> socket.socket:
    sock = _StampingListener(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


SEEDS_DIR = ROOT / "seeds"

#: Outlets and sections the farm's feeds are filed under (outlet, section);
#: feed ``i`` gets ``OUTLETS[i % len]`` and a section that changes every lap.
OUTLETS = (
    "Aljazeera 半岛网",
    "观察者网",
    "BBC 中文网",
    "联合早报",
    "德国之声中文网",
    "法广 RFI",
    "美国之音中文网",
    "纽约时报中文网",
    "端传媒",
    "澎湃新闻",
    "界面新闻",
    "财新网",
    "新京报",
    "南方周末",
    "中央社",
    "自由亚洲电台",
    "日经中文网",
)
SECTIONS = ("新闻", "头条", "国际", "财经", "评论", "科技", "文化", "体育", "军事", "社会")
CITIES = (
    "基辅",
    "莫斯科",
    "日内瓦",
    "明斯克",
    "伊斯坦布尔",
    "华沙",
    "柏林",
    "巴黎",
    "布鲁塞尔",
    "华盛顿",
    "北京",
    "伦敦",
    "哈尔科夫",
    "敖德萨",
    "维也纳",
    "东京",
)
REPORTERS = ("王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱")
GIVEN = ("晓明", "海燕", "建国", "丽华", "志强", "雪梅", "文博", "思远", "佳怡", "子涵", "一鸣")
KICKERS = ("快讯", "独家", "综述", "现场", "分析", "观察", "更新", "焦点", "深度", "追踪")

#: Every feed's newest item is this old, and items are ``ITEM_STEP`` apart.
EPOCH = datetime(2022, 3, 1, 13, 31, 34, tzinfo=UTC)
ITEM_STEP = timedelta(minutes=37)

#: Item HTML is grown paragraph by paragraph to at least this many bytes ...
BODY_MIN = 2300
#: ... and never past this many (the issue asks for ~2-3 KB per item).
BODY_MAX = 3000


def _png(width: int = 1, height: int = 1) -> bytes:
    """A valid, tiny grey PNG (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


IMAGE = _png(16, 9)


@dataclass(frozen=True, slots=True)
class Seed:
    """What the generator takes from one seed post."""

    title: str
    outlet: str
    paragraphs: tuple[str, ...]  # inner text of <p>/<h3>, HTML-escaped, one line each
    headings: tuple[str, ...]


_BLOCK_RE = re.compile(r"<(p|h3)\b[^>]*>(.*?)</\1>", re.S)
_TAG_RE = re.compile(r"<[^>]+>")


def load_seeds(directory: Path = SEEDS_DIR) -> list[Seed]:
    """Parse ``seeds/*.txt`` with the project's own parser and cut them into blocks."""
    seeds = []
    for path in sorted(directory.glob("*.txt")):
        post = parse(path.read_text(encoding="utf-8"), source=str(path))
        paragraphs, headings = [], []
        for kind, inner in _BLOCK_RE.findall(post.body):
            text = " ".join(html.unescape(_TAG_RE.sub("", inner)).split())
            if not text:
                continue
            # Long paragraphs would blow the per-item size budget on their own.
            if kind == "h3":
                headings.append(html.escape(text, quote=False))
            elif len(text.encode()) <= 900:
                paragraphs.append(html.escape(text, quote=False))
        seeds.append(Seed(post.title, post.outlet, tuple(paragraphs), tuple(headings)))
    if not seeds:
        raise SystemExit(f"no seed posts found in {directory}")
    return seeds


@dataclass(frozen=True, slots=True)
class FarmFeed:
    """One pre-rendered feed: its path, labels, bytes, gzip bytes and tags."""

    index: int
    path: str
    outlet: str
    section: str
    body: bytes
    gzipped: bytes | None
    etag: str  # strong, for the identity bytes
    etag_gzip: str  # weak, for the gzip bytes (as nginx does)


def feed_labels(index: int) -> tuple[str, str]:
    outlet = OUTLETS[index % len(OUTLETS)]
    section = SECTIONS[(index // len(OUTLETS)) % len(SECTIONS)]
    return outlet, section


@dataclass(frozen=True, slots=True)
class Material:
    """The seeds cut into the pools the generator draws from."""

    clauses: tuple[str, ...]  # title clauses, split at the seed titles' marks
    paragraphs: tuple[str, ...]
    headings: tuple[str, ...]

    @classmethod
    def of(cls, seeds: list[Seed]) -> Material:
        return cls(
            clauses=tuple(c for s in seeds for c in re.split(r"[：，\s]+", s.title) if len(c) >= 4),
            paragraphs=tuple(p for s in seeds for p in s.paragraphs),
            headings=tuple(h for s in seeds for h in s.headings),
        )


def _title(rng: random.Random, material: Material, feed: int, item: int) -> str:
    # Seed title clauses recombined across seeds.
    first, second = rng.sample(material.clauses, 2)
    kicker = KICKERS[(feed + item) % len(KICKERS)]
    city = CITIES[(feed * 7 + item) % len(CITIES)]
    return f"{kicker}｜{first}，{second}（{city}第{item + 1}报）"


def _reporter(feed: int, item: int) -> str:
    return REPORTERS[(feed + item * 5) % len(REPORTERS)] + GIVEN[(feed * 11 + item) % len(GIVEN)]


def _body(
    rng: random.Random, material: Material, base: str, feed: int, item: int, outlet: str
) -> tuple[str, str, str]:
    """(HTML body of ~2-3 KB, plain-text summary, image URL) for one item."""
    image = f"{base}/img/{feed:05d}/{item:03d}.png"
    city = CITIES[(feed * 3 + item) % len(CITIES)]
    reporter = _reporter(feed, item)
    # The lead carries the feed and item numbers: every item's text is unique,
    # so no two items share a content hash, whatever paragraphs they draw.
    lead = (
        f"（{outlet}{city}讯 记者{reporter}）第{feed + 1}号稿源第{item + 1}篇："
        f"{rng.choice(material.paragraphs)}"
    )
    parts = [
        f'<img src="{image}" width="970" height="546" alt="" referrerpolicy="no-referrer">',
        f"<p>{lead}</p>",
    ]
    pool, headings = material.paragraphs, material.headings
    size = sum(len(p.encode()) for p in parts)
    for paragraph in rng.sample(pool, len(pool)):
        block = f"<p>{paragraph}</p>"
        if rng.random() < 0.15 and headings:
            block = f"<h3>{rng.choice(headings)}</h3>\n{block}"
        grown = size + 1 + len(block.encode())
        if grown > BODY_MAX:
            continue
        parts.append(block)
        size = grown
        if size >= BODY_MIN:
            break
    summary = html.unescape(lead)[:120]
    return "\n".join(parts), summary, image


def render_feed(
    material: Material, base: str, index: int, items: int, *, now: datetime | None = None
) -> bytes:
    """The RSS 2.0 document of feed ``index``: deterministic for (base, index, items)."""
    rng = random.Random(index * 1_000_003 + items)
    outlet, section = feed_labels(index)
    newest = EPOCH + timedelta(minutes=index)
    built = now or newest
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:media="http://search.yahoo.com/mrss/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/">\n<channel>\n',
        f"<title>{html.escape(outlet)} - {html.escape(section)}</title>\n",
        f"<link>{base}/site/{index:05d}/</link>\n",
        f"<description>{html.escape(outlet)}{html.escape(section)}频道最新报道</description>\n",
        "<language>zh-cn</language>\n",
        f"<lastBuildDate>{format_date(built)}</lastBuildDate>\n",
    ]
    for item in range(items):
        title = _title(rng, material, index, item)
        body, summary, image = _body(rng, material, base, index, item, outlet)
        link = f"{base}/article/{index:05d}/{item:03d}.html"
        author = _reporter(index, item)
        out.append(
            "<item>\n"
            f"<title>{html.escape(title)}</title>\n"
            f"<link>{link}</link>\n"
            f'<guid isPermaLink="true">{link}</guid>\n'
            f"<pubDate>{format_date(newest - item * ITEM_STEP)}</pubDate>\n"
            f"<dc:creator>{author}</dc:creator>\n"
            f"<category>{html.escape(section)}</category>\n"
            f"<description>{html.escape(summary)}</description>\n"
            f"<content:encoded><![CDATA[{body}]]></content:encoded>\n"
            f'<media:thumbnail url="{image}" width="970" height="546"/>\n'
            f'<enclosure url="{image}" length="{len(IMAGE)}" type="image/png"/>\n'
            "</item>\n"
        )
    out.append("</channel>\n</rss>\n")
    return "".join(out).encode("utf-8")


def feed_path(index: int) -> str:
    return f"/feeds/{index:05d}.xml"


def build_farm(
    seeds: list[Seed], base: str, feeds: int, items: int, *, use_gzip: bool = True
) -> dict[str, FarmFeed]:
    material = Material.of(seeds)
    farm = {}
    for index in range(feeds):
        body = render_feed(material, base, index, items)
        digest = hashlib.blake2b(body, digest_size=12).hexdigest()
        farm[feed_path(index)] = FarmFeed(
            index=index,
            path=feed_path(index),
            outlet=feed_labels(index)[0],
            section=feed_labels(index)[1],
            body=body,
            gzipped=gzip.compress(body, compresslevel=6, mtime=0) if use_gzip else None,
            etag=f'"{digest}"',
            etag_gzip=f'W/"{digest}"',
        )
    return farm


def _tags(header: str) -> set[str]:
    """The entity tags of an If-None-Match header, weak marks dropped (weak comparison)."""
    tags = set()
    for part in header.split(","):
        tag = part.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag:
            tags.add(tag)
    return tags


class Stats:
    """What the farm served since the last reset (all on the server's one loop thread)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.by_status: Counter[int] = Counter()
        self.feeds_by_status: dict[int, set[str]] = {}
        self.other = 0
        self.bytes_sent = 0
        self.peers: set[int] = set()  # client ports: how many connections were used
        self.started = time.monotonic()

    def as_json(self) -> dict[str, object]:
        return {
            "feed_requests": {str(k): v for k, v in sorted(self.by_status.items())},
            "distinct_feeds": {str(k): len(v) for k, v in sorted(self.feeds_by_status.items())},
            "other_requests": self.other,
            "bytes_sent": self.bytes_sent,
            "connections": len(self.peers),
            "seconds": round(time.monotonic() - self.started, 3),
        }


async def serve(  # noqa: C901 - one handler, its options inline
    farm: dict[str, FarmFeed],
    sock: socket.socket,
    *,
    more: list[socket.socket] | None = None,
    log_path: Path | None = None,
) -> None:
    from aiohttp import web  # imported here: building the farm does not need it

    stats = Stats()
    request_log = log_path.open("a", encoding="ascii", buffering=1) if log_path else None
    base_headers = {"Content-Type": "application/rss+xml; charset=utf-8", "Vary": "Accept-Encoding"}

    async def handle(request: web.Request) -> web.StreamResponse:
        feed = farm.get(request.path)
        if feed is None:
            stats.other += 1
            if request.path == "/_stats":
                return web.json_response(stats.as_json())
            if request.path == "/_reset":
                stats.reset()
                return web.json_response({"reset": True})
            if request.path.startswith("/img/"):
                return web.Response(body=IMAGE, content_type="image/png")
            return web.Response(status=404, text="not in the farm\n")
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            stats.peers.add(peer[1])
        gzipped = feed.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", "")
        etag = feed.etag_gzip if gzipped else feed.etag
        match = request.headers.get("If-None-Match")
        if match is not None and (
            match.strip() == "*" or _tags(match) & {feed.etag, feed.etag_gzip[2:]}
        ):
            status = 304
            response = web.Response(status=304, headers={"ETag": etag, "Vary": "Accept-Encoding"})
        else:
            status = 200
            body = feed.gzipped if gzipped else feed.body
            headers = dict(base_headers, ETag=etag)
            if gzipped:
                headers["Content-Encoding"] = "gzip"
            response = web.Response(body=body, headers=headers)
            stats.bytes_sent += len(body)
        stats.by_status[status] += 1
        stats.feeds_by_status.setdefault(status, set()).add(feed.path)
        if request_log is not None:
            transport = request.transport
            local = transport.get_extra_info("sockname") if transport else None
            where = local[0] if local else "?"
            conn = transport.get_extra_info("socket") if transport else None
            arrived = _ARRIVED.get(conn.fileno()) if conn is not None else None
            stamp = arrived if arrived is not None else time.time()
            port = peer[1] if peer else 0
            request_log.write(f"{stamp:.6f} {where} {feed.path} {status} {port}\n")
        return response

    server = web.Server(handle, access_log=None)
    runner = web.ServerRunner(server, shutdown_timeout=0.5)
    await runner.setup()
    await web.SockSite(runner, sock, shutdown_timeout=0.5).start()
    for extra in more or ():
        await web.SockSite(runner, extra, shutdown_timeout=0.5).start()

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def on_stdin() -> None:
        # The parent holds our stdin open; EOF means it is gone, so are we.
        try:
            data = os.read(sys.stdin.fileno(), 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(sys.stdin.fileno())
            stop.set()

    with contextlib.suppress(OSError, ValueError, NotImplementedError):
        if not sys.stdin.isatty():
            loop.add_reader(sys.stdin.fileno(), on_stdin)
    await stop.wait()
    await runner.cleanup()
    if request_log is not None:
        request_log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=300)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--manifest", type=Path, help="write the feed list here (JSON)")
    parser.add_argument("--no-gzip", action="store_true", help="serve identity bytes only")
    parser.add_argument(
        "--hosts", type=int, default=1, help="spread the feeds over 127.0.0.1 .. 127.0.0.K"
    )
    parser.add_argument("--log", type=Path, help="append one line per feed request here")
    args = parser.parse_args(argv)
    if args.feeds < 1 or args.items < 1:
        parser.error("--feeds and --items must be positive")
    if not 1 <= args.hosts <= 250:
        parser.error("--hosts must be 1 .. 250")

    sock = _listener("127.0.0.1", args.port)
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    more = [_listener(f"127.0.0.{k}", port) for k in range(2, args.hosts + 1)]

    def url_of(feed: FarmFeed) -> str:
        return f"http://127.0.0.{1 + feed.index % args.hosts}:{port}{feed.path}"

    started = time.perf_counter()
    farm = build_farm(load_seeds(), base, args.feeds, args.items, use_gzip=not args.no_gzip)
    build_s = time.perf_counter() - started
    total = sum(len(f.body) for f in farm.values())
    if args.manifest is not None:
        manifest = {
            "base": base,
            "items": args.items,
            "feeds": [
                {"url": url_of(f), "outlet": f.outlet, "section": f.section} for f in farm.values()
            ],
        }
        tmp = args.manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
        tmp.replace(args.manifest)
    ready = {
        "base": base,
        "feeds": args.feeds,
        "items": args.items,
        "feed_bytes": total,
        "gzip_bytes": sum(len(f.gzipped or b"") for f in farm.values()),
        "item_bytes": total // (args.feeds * args.items),
        "build_s": round(build_s, 2),
        "pid": os.getpid(),
        "hosts": args.hosts,
    }
    print(json.dumps(ready), flush=True)
    asyncio.run(serve(farm, sock, more=more, log_path=args.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
