"""Worst-case inputs for every text step, timed at 1 KiB .. 16 MiB.

    python bench/hostile_timing.py                 # every case, 1 KiB .. 16 MiB
    python bench/hostile_timing.py --max 1M        # stop at 1 MiB (quick look)
    python bench/hostile_timing.py --only text_of  # cases whose name contains it
    python bench/hostile_timing.py --stalls        # + event-loop stalls of whole feeds

Each input is built to defeat one step: a ``<`` that never closes (every
regex that looks for the ``>`` rescans the rest of the body from each one),
unterminated comments, huge entity names and character references, tags
with a million attributes, feeds with one 16 MiB item or a million small
ones.  For each case and size the table shows the median wall time of the
step (inputs are built outside the timing), and the growth ratio for a 16x
larger input: about 16 for a linear step, about 256 for a quadratic one.
A step that raises shows the exception instead of a time.

Every measurement runs in a forked child with a time limit (``--limit``,
default 60 s), so a super-linear step shows as ``>60s`` instead of hanging
the benchmark; larger sizes of that case are then skipped.

``--stalls`` also runs whole feeds through ``parse_and_build`` in a thread
next to an asyncio loop that ticks every 10 ms -- what the daemon does --
and prints the longest time the loop could not run (the GIL held by one
long C call: a regex over the whole body, lxml, a hash).  That is the delay
``/healthz`` would see.

A measurement aid, not a test: nothing here asserts a number.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aggregator.config.feeds import FeedSpec  # noqa: E402
from aggregator.content import clean as content
from aggregator.content import images
from aggregator.service.worker import parse_and_build  # noqa: E402
from aggregator.parse import parser as parse  # noqa: E402
from aggregator.policy import dedup
from aggregator.policy.filters import Filters, Rule  # noqa: E402

KIB = 1024
MIB = 1024 * KIB
SIZES = (KIB, 16 * KIB, 256 * KIB, MIB, 16 * MIB)
RATIOS = ((KIB, 16 * KIB), (16 * KIB, 256 * KIB), (MIB, 16 * MIB))

# A paragraph of an ordinary post, for the "normal" baselines.
NORMAL_PARAGRAPH = (
    "<p>俄罗斯外交部发言人扎哈罗娃在记者会上表示，莫斯科“强调其拒绝”欧洲存在美国核武器。"
    '<a href="https://example.com/a?x=1&amp;y=2">链接</a> 详见 <b>报道</b>。</p>\n'
    '<img src="https://img.example.com/pic.jpg" alt="图片" width="640">\n'
)


def repeat(unit: str, size: int) -> str:
    """``unit`` repeated to about ``size`` characters."""
    return unit * max(1, size // len(unit))


def padded(head: str, filler: str, tail: str, size: int) -> str:
    """``head``, then ``filler`` repeated, then ``tail``: about ``size`` characters."""
    return head + repeat(filler, max(1, size - len(head) - len(tail))) + tail


def rss(items: list[tuple[str, str]]) -> bytes:
    """RSS 2.0 with (title, description HTML) items, both escaped as feeds send them."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        "<title>hostile</title><link>https://news.example.com/</link>"
    ]
    for i, (title, body) in enumerate(items):
        parts.append(
            f"<item><title>{html.escape(title, quote=False)}</title>"
            f"<link>https://news.example.com/{i}</link><guid>g{i}</guid>"
            f"<pubDate>Tue, 01 Mar 2022 13:31:34 GMT</pubDate>"
            f"<description>{html.escape(body, quote=False)}</description></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def rss_one_item(body: str) -> bytes:
    return rss([("one huge item", body)])


def rss_many_items(size: int) -> bytes:
    """Ordinary items, as many as fit in ``size`` bytes."""
    one = len(rss([("标题", NORMAL_PARAGRAPH)])) - 120
    return rss([(f"标题 {i}", NORMAL_PARAGRAPH) for i in range(max(1, size // one))])


def json_one_item(body: str) -> bytes:
    import json

    document = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "hostile",
        "items": [{"id": "1", "url": "https://news.example.com/1", "content_html": body}],
    }
    return json.dumps(document, ensure_ascii=False).encode()


SPEC = FeedSpec(
    url="https://news.example.com/feed",
    outlet="例子网",
    section="新闻",
    group="新媒体",
    filters=Filters(
        keep=(Rule.of({"body": "乌克兰|俄罗斯"}),),
        block=(Rule.of({"title": "广告|推广"}), Rule.of({"link": "/sponsored/"})),
    ),
)
NOW = datetime(2026, 12, 3, tzinfo=UTC)


def build(data: bytes) -> Any:
    return parse_and_build(data, SPEC.url, "application/rss+xml", None, SPEC, NOW)


def build_json(data: bytes) -> Any:
    return parse_and_build(data, SPEC.url, "application/feed+json", None, SPEC, NOW)


def title_text(value: str) -> Any:
    return parse._detail_text({"title": value, "title_detail": {"type": "text/html"}}, "title")


def clean(body: str) -> str:
    return content.clean_html(body, base_url="https://news.example.com/a/")


def verdict(body: str) -> str | None:
    return SPEC.filters.verdict(title="标题", body_html=body, link="https://x/1", author=None)


canonical = dedup.canonical_link.__wrapped__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[int], Any]  # size -> input
    run: Callable[[Any], Any]


CASES = [
    # dedup: the text every content hash and body filter is computed from
    Case("text_of: 'a < b ' (issue 14)", lambda n: repeat("a < b ", n), dedup.text_of),
    Case("text_of: '<!--' unterminated", lambda n: repeat("<!--", n), dedup.text_of),
    Case("text_of: '<!-- -->' then '<a'", lambda n: "<!-- -->" + repeat("<a", n), dedup.text_of),
    Case("text_of: '&#' + digits", lambda n: repeat("&#" + "1" * 5000 + ";", n), dedup.text_of),
    Case("text_of: '&' + long name", lambda n: padded("&", "a", ";", n), dedup.text_of),
    Case("text_of: normal body", lambda n: repeat(NORMAL_PARAGRAPH, n), dedup.text_of),
    Case(
        "content_hash: 'a < b ' title and body",
        lambda n: repeat("a < b ", n),
        lambda s: dedup.content_hash(s[:4096], s),
    ),
    # the sanitiser
    Case("clean_html: 'a < b '", lambda n: repeat("a < b ", n), clean),
    Case("clean_html: '<a ' unterminated", lambda n: repeat("<a ", n), clean),
    Case("clean_html: '<!--' unterminated", lambda n: repeat("<!--", n), clean),
    Case("clean_html: '</' runs", lambda n: repeat("</", n), clean),
    Case("clean_html: '<script>' unclosed", lambda n: repeat("<script>", n), clean),
    Case("clean_html: one huge tag name", lambda n: padded("<", "x", ">", n), clean),
    Case("clean_html: one tag, many attrs", lambda n: padded("<p", " a", ">", n), clean),
    Case("clean_html: attr '&' + long name", lambda n: padded('<a title="&', "a", '">', n), clean),
    Case("clean_html: attr '&#' + digits", lambda n: padded('<a title="&#', "1", ';">', n), clean),
    Case("clean_html: style '/*' runs", lambda n: padded('<p style="', "/*", '">', n), clean),
    Case("clean_html: srcset '(' runs", lambda n: padded('<img srcset="a ', "(", '">', n), clean),
    Case(
        "clean_html: srcset many URLs", lambda n: padded('<img srcset="', "a 1x, ", '">', n), clean
    ),
    Case("clean_html: normal body", lambda n: repeat(NORMAL_PARAGRAPH, n), clean),
    Case("clean_html: normal + braces", lambda n: repeat(NORMAL_PARAGRAPH + "{x}", n), clean),
    # titles (parse): tags out, entities decoded, one line
    Case("title: 'a < b '", lambda n: repeat("a < b ", n), title_text),
    Case("title: '<b' unterminated", lambda n: repeat("<b", n), title_text),
    Case("title: '<!--' unterminated", lambda n: repeat("<!--", n), title_text),
    Case("title: '<script>' unclosed", lambda n: repeat("<script>", n), title_text),
    Case("title: '<<<<' then letter", lambda n: padded("", "<", "a", n), title_text),
    # links
    Case(
        "canonical_link: many params",
        lambda n: padded("http://x.cn/?", "utm_a=1&b=2&", "", n),
        canonical,
    ),
    Case("canonical_link: long path", lambda n: padded("http://x.cn/", "a/", "/", n), canonical),
    Case("canonical_link: long host", lambda n: padded("http://", "a", ".cn/", n), canonical),
    # images (images: archive) and filters
    Case(
        "find_image_urls: many <img>",
        lambda n: repeat('<img src="https://i.example.com/a.jpg">', n),
        images.find_image_urls,
    ),
    Case("find_image_urls: 'a < b '", lambda n: repeat("a < b ", n), images.find_image_urls),
    Case(
        "rewrite_srcs: many <img>",
        lambda n: repeat('<img src="https://i.example.com/a.jpg">', n),
        lambda s: images.rewrite_srcs(s, {"https://i.example.com/a.jpg": "/images/x.jpg"}),
    ),
    Case("filters: body rule, 'a < b '", lambda n: repeat("a < b ", n), verdict),
    # whole documents
    Case(
        "parse_feed: one item 'a < b '",
        lambda n: rss_one_item(repeat("a < b ", n)),
        lambda d: parse.parse_feed(d, url=SPEC.url),
    ),
    Case(
        "feedparser: one item 'a < b '",
        lambda n: rss_one_item(repeat("a < b ", n)),
        lambda d: parse.parse_feed(d, url=SPEC.url, fast=False),
    ),
    Case("parse_feed: many items", rss_many_items, lambda d: parse.parse_feed(d, url=SPEC.url)),
    Case(
        "feedparser: many items",
        rss_many_items,
        lambda d: parse.parse_feed(d, url=SPEC.url, fast=False),
    ),
    Case("parse_and_build: one item 'a < b '", lambda n: rss_one_item(repeat("a < b ", n)), build),
    Case("parse_and_build: one item '<!--'", lambda n: rss_one_item(repeat("<!--", n)), build),
    Case("parse_and_build: many items", rss_many_items, build),
    Case(
        "parse_and_build: JSON one item 'a < b '",
        lambda n: json_one_item(repeat("a < b ", n)),
        build_json,
    ),
]


def _child(case: Case, size: int, repeats: int, conn: Connection) -> None:
    try:
        data = case.make(size)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            case.run(data)
            times.append(time.perf_counter() - start)
        conn.send(("ok", statistics.median(times)))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}"))


def measure(case: Case, size: int, limit: float, runs: int = 0) -> tuple[str, float | str]:
    """("ok", seconds), ("error", exception name) or ("timeout", limit)."""
    repeats = runs or (5 if size <= 256 * KIB else 3 if size <= MIB else 1)
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(case, size, repeats, send), daemon=True)
    child.start()
    send.close()
    deadline = time.monotonic() + limit * repeats + 30  # building 16 MiB takes a while
    while not receive.poll(0.1):
        if time.monotonic() > deadline or not child.is_alive():
            break
    if receive.poll(0):
        result = receive.recv()
        child.join()
        if result[0] == "ok" and result[1] > limit:
            return "timeout", result[1]
        return result  # type: ignore[no-any-return]
    child.kill()
    child.join()
    return "timeout", limit


def cell(result: tuple[str, float | str] | None) -> str:
    if result is None:
        return "-"
    kind, value = result
    if kind == "error":
        return str(value)
    assert isinstance(value, float)
    text = f"{value * 1e3:.2f} ms" if value < 1 else f"{value:.2f} s"
    return f">{text}" if kind == "timeout" else text


def label(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def parse_size(text: str) -> int:
    units = {"K": KIB, "M": MIB}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join([line, rule, *body])


def timings(cases: list[Case], sizes: tuple[int, ...], limit: float, runs: int = 0) -> None:
    header = ["case", *(label(s) for s in sizes)]
    header += [f"{label(b)}/{label(a)}" for a, b in RATIOS if b in sizes]
    rows = []
    for case in cases:
        results: dict[int, tuple[str, float | str]] = {}
        for size in sizes:
            results[size] = measure(case, size, limit, runs)
            print(f"  {case.name} @ {label(size)}: {cell(results[size])}", file=sys.stderr)
            if results[size][0] == "timeout":
                break
        ratios = []
        for a, b in RATIOS:
            if b not in sizes:
                continue
            ra, rb = results.get(a), results.get(b)
            if ra and rb and ra[0] == "ok" and rb[0] in ("ok", "timeout"):
                ratio = rb[1] / ra[1]  # type: ignore[operator]
                ratios.append(f"{'>' if rb[0] == 'timeout' else ''}{ratio:.0f}")
            else:
                ratios.append("-")
        rows.append([case.name, *(cell(results.get(s)) for s in sizes), *ratios])
    print(table(rows, header))


# --------------------------------------------------------------------------
# Event-loop stalls


STALL_CASES = [
    ("one item 'a < b ', RSS", lambda n: rss_one_item(repeat("a < b ", n)), build),
    ("one item '<!--', RSS", lambda n: rss_one_item(repeat("<!--", n)), build),
    ("one item normal body, RSS", lambda n: rss_one_item(repeat(NORMAL_PARAGRAPH, n)), build),
    ("many items, RSS", rss_many_items, build),
    ("one item 'a < b ', JSON Feed", lambda n: json_one_item(repeat("a < b ", n)), build_json),
]


async def _stall(run: Callable[[], Any]) -> tuple[float, float]:
    """Wall time of ``run`` in a thread and the longest gap between loop ticks."""
    worst = 0.0
    done = threading.Event()

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            worst = max(worst, now - last - 0.01)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    start = time.perf_counter()
    try:
        await asyncio.to_thread(run)
    finally:
        elapsed = time.perf_counter() - start
        done.set()
        await tick
    return elapsed, worst


def _stall_child(
    make: Callable[[int], Any], run: Callable[[Any], Any], size: int, conn: Connection
) -> None:
    try:
        data = make(size)
        conn.send(("ok", asyncio.run(_stall(lambda: run(data)))))
    except BaseException as exc:
        conn.send(("error", type(exc).__name__))


def stalls(size: int, limit: float) -> None:
    rows = []
    for name, make, run in STALL_CASES:
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_stall_child, args=(make, run, size, send), daemon=True)
        child.start()
        send.close()
        if receive.poll(limit + 30):
            kind, value = receive.recv()
            child.join()
        else:
            child.kill()
            child.join()
            kind, value = "timeout", None
        if kind == "ok":
            elapsed, worst = value
            rows.append([name, f"{elapsed:.2f} s", f"{worst * 1e3:.0f} ms"])
        else:
            rows.append([name, f">{limit:.0f} s" if kind == "timeout" else value, "-"])
        print(f"  stall {name}: {rows[-1][1:]}", file=sys.stderr)
    print(f"\nparse_and_build of a {label(size)} feed in a thread, event loop ticking every 10 ms:")
    print(table(rows, ["feed", "parse_and_build", "longest loop stall"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=parse_size, default=16 * MIB, help="largest size (16M)")
    parser.add_argument("--only", default="", help="cases whose name contains this")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds per measurement")
    parser.add_argument("--runs", type=int, default=0, help="runs per size (0: 5, 3, then 1)")
    parser.add_argument("--stalls", action="store_true", help="also measure event-loop stalls")
    parser.add_argument("--stall-size", type=parse_size, default=16 * MIB)
    parser.add_argument("--no-timings", action="store_true", help="only the stall table")
    args = parser.parse_args(argv)
    sizes = tuple(s for s in SIZES if s <= args.max)
    cases = [c for c in CASES if args.only in c.name]
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}; "
        "median wall time per call; ratio = time(16x size) / time(size): "
        "~16 linear, ~256 quadratic"
    )
    if not args.no_timings:
        timings(cases, sizes, args.limit, args.runs)
    if args.stalls:
        stalls(args.stall_size, args.limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
