"""The operator's page in a real browser, against a real daemon polling a local farm.

Headless Chromium from Debian's package (``apt-get install chromium``; .ci/run
installs it) driven by Playwright, which is told to use that binary and never
downloads one.  Where either is missing the test is skipped and says which.

Screenshots of every page are saved under ``test-artifacts/web/`` at the
repository root (ignored by git; ``AGGREGATOR_TEST_ARTIFACTS`` moves it) for
a person to look at: the test checks what the page says, not how it looks.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from feedbuild import EtagFeed, feeds_yaml, rss_document, seed_item, seed_posts
from localserver import LocalServer
from support_proc import AggregatorProcess, free_port, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("AGGREGATOR_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "web"
TOKEN = "farm-token-0123456789"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def _chromium() -> str:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "no Chromium on PATH: install Debian's package (apt-get install -y chromium), "
        "as .ci/run does"
    )


@pytest.fixture
def browser() -> Iterator[Any]:
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install playwright; no browser download)")
    from playwright.sync_api import Error as PlaywrightError

    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        try:
            launched = p.chromium.launch(
                executable_path=executable, headless=True, args=["--no-sandbox"]
            )
        except PlaywrightError as exc:
            pytest.skip(f"{executable} does not start headless: {str(exc).splitlines()[0]}")
        try:
            yield launched
        finally:
            launched.close()


def _farm(server: LocalServer) -> dict[tuple[str, str, str], str]:
    """Three good feeds with seed posts, one that answers 404, one that times out slowly."""
    posts = seed_posts()
    feeds: dict[tuple[str, str, str], str] = {}
    for n, outlet in enumerate(("Farm Alpha", "Farm Beta", "Farm Gamma")):
        items = "".join(
            seed_item(
                post.__class__(
                    **{
                        **{f: getattr(post, f) for f in post.__dataclass_fields__},
                        "title": f"{post.title} {outlet} #{i}",
                    }
                ),
                link=f"https://news.example.com/{n}/{i}",
                guid=f"{n}-{i}",
            )
            for i, post in enumerate(posts[:3])
        )
        path = f"/feed{n}.xml"
        server.route(path, EtagFeed(rss_document(items)))
        feeds[("新媒体", outlet, "头条")] = server.url(path)
    server.route("/missing.xml", status=404, body="no such feed")
    feeds[("新媒体", "Farm Broken", "头条")] = server.url("/missing.xml")
    return feeds


def _shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5000  # something was drawn
    return path


def test_the_page_in_chromium(tmp_path: Path, local_server: LocalServer, browser: Any) -> None:
    feeds = _farm(local_server)
    config = tmp_path / "feeds.yaml"
    config.write_text(feeds_yaml(feeds, interval="1h"), encoding="utf-8")
    export = tmp_path / "site" / "source" / "_posts"
    export.mkdir(parents=True)
    port = free_port()
    db_path = tmp_path / "a.db"
    base = f"http://127.0.0.1:{port}"
    with AggregatorProcess(
        "run",
        "--config",
        str(config),
        "--http",
        f"127.0.0.1:{port}",
        "--export",
        str(export),
        db=f"sqlite:///{db_path}",
        cwd=tmp_path,
        env={"AGGREGATOR_HTTP_TOKEN": TOKEN},
    ) as daemon:

        def polls() -> int:
            try:
                with sqlite3.connect(db_path) as c:
                    return int(c.execute("SELECT count(*) FROM polls").fetchone()[0])
            except sqlite3.Error:
                return 0

        wait_for(lambda: polls() >= 4, 40, f"every farm feed polled once\n{daemon.log}")
        wait_for(
            lambda: httpx.get(f"{base}/api/summary", timeout=5).json()["totals"]["polls_24h"] >= 4,
            20,
            "the page's summary sees the polls",
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on(
            "response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None
        )

        # / : every farm feed, the failing one failing with its message, the chart drawn
        page.goto(base + "/")
        rows = page.locator("table.feeds tbody tr")
        assert rows.count() == 4
        text = page.locator("table.feeds").inner_text()
        for outlet in ("Farm Alpha", "Farm Beta", "Farm Gamma", "Farm Broken"):
            assert outlet in text
        broken = page.locator("tr", has_text="Farm Broken")
        assert broken.locator(".badge").inner_text() == "failing"
        assert "404" in broken.locator("td.result").inner_text()
        chart = page.locator("svg.hourly")
        assert int(chart.get_attribute("data-polls")) >= 4
        assert int(chart.get_attribute("data-new")) == 9
        assert chart.locator("rect.polls").count() >= 1
        assert chart.locator("polyline.new").count() == 1
        box = chart.bounding_box()
        assert box is not None and box["width"] > 300  # laid out, not collapsed
        alpha_spark = page.locator("tr", has_text="Farm Alpha").locator("svg.spark")
        assert alpha_spark.get_attribute("data-total") == "3"
        _shot(page, "index")

        # the filter, without script: a GET form
        page.select_option("select[name=state]", "failing")
        page.click("form.filters button")
        assert page.locator("table.feeds tbody tr").count() == 1
        assert "state=failing" in page.url

        # /feeds/<id>: the failing feed's history and message
        page.click("text=Farm Broken")
        assert "/feeds/" in page.url
        assert "permanent" in page.locator("table.errors").inner_text()
        assert "404" in page.locator("table.errors").inner_text()
        assert "back-off" in page.locator("table.polls").inner_text()
        assert page.locator("button", has_text="Poll now").count() == 0  # not signed in
        _shot(page, "feed-failing")

        # a good feed: polls with bytes, its posts with source links and file names
        page.goto(base + "/")
        page.click("text=Farm Alpha")
        assert page.locator("table.posts tbody tr").count() == 3
        assert page.locator("table.posts a[href^='https://news.example.com/0/']").count() == 3
        assert page.locator("table.posts code").count() == 3  # exported file names
        _shot(page, "feed-ok")

        # /posts: search finds a post by a word of its title
        title = seed_posts()[0].title
        word = title[:4]
        page.goto(base + "/posts")
        assert page.locator("table.posts tbody tr").count() == 9
        page.fill("input[name=q]", word)
        page.click("form.filters button")
        found = page.locator("table.posts tbody tr")
        assert found.count() == 3
        assert all(word in t for t in found.all_inner_texts())
        _shot(page, "posts-search")

        # actions need the token: wrong token refused, right one lets "Poll now" through
        listed = httpx.get(f"{base}/api/feeds", params={"q": "Farm Broken"}).json()
        feed_id = listed["feeds"][0]["id"]
        page.goto(f"{base}/feeds/{feed_id}")
        page.fill("input[name=token]", "wrong")
        with page.expect_navigation() as nav:
            page.click("form.login button")
        response = nav.value
        assert response is not None and response.status == 403
        page.goto(f"{base}/feeds/{feed_id}")
        page.fill("input[name=token]", TOKEN)
        with page.expect_navigation(url=base + "/"):
            page.click("form.login button")
        assert page.locator("button", has_text="Sign out").count() == 1
        page.goto(f"{base}/feeds/{feed_id}")
        before = len(local_server.requests_to("/missing.xml"))
        page.click("button:has-text('Poll now')")
        assert page.url == f"{base}/feeds/{feed_id}"
        wait_for(
            lambda: len(local_server.requests_to("/missing.xml")) > before,
            20,
            "the feed polled again after 'Poll now'",
        )
        assert httpx.post(f"{base}/api/feeds/{feed_id}/poll").status_code == 401
        _shot(page, "feed-signed-in")
        # nothing blocked by the CSP, no script errors (the refused sign-in's 403 aside)
        assert [e for e in errors if "403" not in e] == [], errors  # the refused sign-in
        page.close()
        assert daemon.stop()[0] == 0
