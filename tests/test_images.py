"""images: archive -- images fetched at ingest, stored content-addressed, srcs rewritten."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path

import pytest
from aiohttp import web
from feedbuild import EtagFeed, rss_document, seed_item, seed_posts
from localserver import LocalServer

from aggregator.config.feeds import Config, loads_config
from aggregator.content.clean import clean_html
from aggregator.content.images import find_image_urls, referer_for, rewrite_post, rewrite_srcs
from aggregator.hexo.post import Post
from aggregator.service.runner import fetch_once
from aggregator.store import Store

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'a.db'}")


@pytest.fixture
def posts_dir(tmp_path: Path) -> Path:
    return tmp_path / "site" / "source" / "_posts"


def _config(url: str, extra: str = "") -> Config:
    return loads_config(
        "defaults:\n  group: 新媒体\n  images: archive\n  allow_private_networks: true\n"
        f"feeds:\n  - url: {url}\n    outlet: 观察者网\n    section: 头条\n{extra}",
        source="feeds.yaml",
    )


def _post(body: str, headimg: str = "", n: int = 2) -> Post:
    return dataclasses.replace(seed_posts()[n], body=body, headimg=headimg, thumbnail=headimg)


def _image(data: bytes, content_type: str = "image/jpeg", *, referer: str | None = None):
    """A handler serving ``data`` only when the Referer is exactly ``referer`` (None: absent)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Referer") != referer:
            return web.Response(status=403, text="hotlinking not allowed")
        return web.Response(body=data, headers={"Content-Type": content_type})

    return handler


def _run(store: Store, config: Config, posts_dir: Path):
    (report,) = asyncio.run(fetch_once(store, config, config.feeds, export_dir=posts_dir))
    return report


def _archived(data: bytes, ext: str) -> str:
    return f"/images/{hashlib.sha256(data).hexdigest()}.{ext}"


# -- pure helpers --------------------------------------------------------------


def test_rewrite_changes_only_the_src_values() -> None:
    body = (
        '<p>图 <IMG alt=x SRC = "https://a.cn/1.jpg?x=1&amp;y=2" src="https://b/2.jpg">'
        "<img src=https://a.cn/3.png alt='&lt;'><img data-src=\"https://a.cn/1.jpg\">"
        '<img src="https://not.mapped/4.jpg"></p>'
    )
    mapping = {
        "https://a.cn/1.jpg?x=1&y=2": "/images/aa.jpg",
        "https://a.cn/3.png": "/images/b.png",
    }
    assert find_image_urls(body) == [
        "https://a.cn/1.jpg?x=1&y=2",
        "https://a.cn/3.png",
        "https://not.mapped/4.jpg",
    ]
    assert rewrite_srcs(body, mapping) == (
        '<p>图 <IMG alt=x SRC = "/images/aa.jpg" src="https://b/2.jpg">'
        "<img src=/images/b.png alt='&lt;'><img data-src=\"https://a.cn/1.jpg\">"
        '<img src="https://not.mapped/4.jpg"></p>'
    )
    assert rewrite_srcs(body, {}) is body
    post = _post(body, headimg="https://a.cn/3.png")
    new = rewrite_post(post, mapping)
    assert new.headimg == new.thumbnail == "/images/b.png"
    assert rewrite_post(post, {"https://elsewhere/": "/images/x.gif"}) is post


def test_referer_rules() -> None:
    rules = {"sinaimg.cn": "origin", "n.sinaimg.cn": "none", "qpic.cn": "https://mp.weixin.qq.com/"}
    assert referer_for("https://wx1.sinaimg.cn/large/a.jpg", rules) == "https://wx1.sinaimg.cn/"
    assert referer_for("http://u:p@sinaimg.cn:8080/a.jpg", rules) == "http://sinaimg.cn:8080/"
    assert referer_for("https://n.sinaimg.cn/a.jpg", rules) is None
    assert referer_for("https://mmbiz.qpic.cn/a", rules) == "https://mp.weixin.qq.com/"
    assert referer_for("https://example.com/a.jpg", rules) is None  # no rule: none
    assert referer_for("https://xsinaimg.cn/a.jpg", rules) is None  # not a subdomain


def test_config_validates_image_keys() -> None:
    from aggregator.config.feeds import ConfigError

    with pytest.raises(ConfigError) as caught:
        _config("http://x/feed", "    images: local\n    image_referers: {a.cn: sometimes}\n")
    text = str(caught.value)
    assert "images" in text and "none, origin or an http(s) URL" in text
    config = loads_config(
        "defaults:\n  group: g\n  image_referers: {a.cn: origin, b.cn: none}\n"
        "feeds:\n  - url: http://x/feed\n    outlet: o\n    section: s\n"
        "    image_referers: {B.cn: 'https://b.cn/'}\n"
    )
    (spec,) = config.feeds
    assert spec.images == "remote"
    assert dict(spec.image_referers) == {"a.cn": "origin", "b.cn": "https://b.cn/"}


# -- with a server --------------------------------------------------------------


def test_archived_with_the_hosts_referer_rule_and_src_rewritten(
    store: Store, local_server: LocalServer, posts_dir: Path
) -> None:
    origin = local_server.url("/")
    image_url = local_server.url("/img/a.jpg")
    head_url = local_server.url("/img/head.png")
    local_server.route("/img/a.jpg", _image(JPEG, referer=origin))
    local_server.route("/img/head.png", _image(PNG, "image/png", referer=origin))
    body = f'<p>正文&nbsp;一</p><p><img alt="图" src="{image_url}" width=3></p><p>尾</p>'
    post = _post(body, headimg=head_url)
    local_server.route("/feed.xml", EtagFeed(rss_document(seed_item(post))))
    config = _config(local_server.url("/feed.xml"), "    image_referers: {127.0.0.1: origin}\n")

    report = _run(store, config, posts_dir)

    assert report.new == 1 and not report.failed, report
    assert not report.notes, report.notes
    (stored,) = store.iter_posts()
    jpg, png = _archived(JPEG, "jpg"), _archived(PNG, "png")
    # Only the src value changed: the rest is what remote mode stores.
    assert stored.post.body == clean_html(body, base_url=None).replace(image_url, jpg)
    assert stored.post.headimg == stored.post.thumbnail == png
    images = posts_dir.parent / "images"
    assert (images / jpg.rsplit("/", 1)[1]).read_bytes() == JPEG
    assert (images / png.rsplit("/", 1)[1]).read_bytes() == PNG
    (request,) = local_server.requests_to("/img/a.jpg")
    assert request.headers["Referer"] == origin
    (exported,) = posts_dir.glob("*.md")
    assert f'src="{jpg}"' in exported.read_text("utf-8")


def test_default_rule_sends_no_referer(
    store: Store, local_server: LocalServer, posts_dir: Path
) -> None:
    local_server.route("/img/a.jpg", _image(JPEG, referer=None))
    image_url = local_server.url("/img/a.jpg")
    post = _post(f'<p><img src="{image_url}"></p>')
    local_server.route("/feed.xml", EtagFeed(rss_document(seed_item(post))))
    report = _run(store, _config(local_server.url("/feed.xml")), posts_dir)
    assert report.new == 1 and not report.notes, report
    (stored,) = store.iter_posts()
    assert _archived(JPEG, "jpg") in stored.post.body and image_url not in stored.post.body
    assert "Referer" not in local_server.requests_to("/img/a.jpg")[0].headers


def test_wrong_referer_dead_and_refused_images_keep_their_remote_url(
    store: Store, local_server: LocalServer, posts_dir: Path
) -> None:
    local_server.route("/img/strict.jpg", _image(JPEG, referer="https://only.this/"))
    local_server.route("/img/page.jpg", body="<html>not an image</html>",
                       headers={"Content-Type": "text/html"})  # fmt: skip
    local_server.route("/img/big.jpg", body=JPEG, headers={"Content-Type": "image/jpeg"})
    urls = [local_server.url(p) for p in ("/img/strict.jpg", "/img/gone.jpg", "/img/page.jpg")]
    urls.append(local_server.url("/img/big.jpg"))
    body = "".join(f'<p><img src="{u}"></p>' for u in urls)
    post = _post(body)
    local_server.route("/feed.xml", EtagFeed(rss_document(seed_item(post))))
    config = _config(local_server.url("/feed.xml"), "    max_image_bytes: 1000\n")

    report = _run(store, config, posts_dir)

    assert report.new == 1 and not report.failed, report
    (stored,) = store.iter_posts()
    assert stored.post.body == clean_html(body, base_url=None)  # all four kept remote
    notes = "\n".join(report.notes)
    assert len(report.notes) == 4, notes
    assert "strict.jpg kept remote" in notes and "403" in notes
    assert "gone.jpg kept remote" in notes and "404" in notes
    assert "page.jpg kept remote: not an image (Content-Type text/html)" in notes
    assert "big.jpg kept remote: larger than the 1000-byte image limit" in notes
    assert not list((posts_dir.parent / "images").glob("*.jpg"))
    (exported,) = posts_dir.glob("*.md")
    assert urls[1] in exported.read_text("utf-8")


def test_an_archived_image_is_not_fetched_again_and_a_dead_one_not_at_once(
    store: Store, local_server: LocalServer, posts_dir: Path
) -> None:
    local_server.route("/img/a.jpg", _image(JPEG))
    shared, dead = local_server.url("/img/a.jpg"), local_server.url("/img/dead.jpg")
    first = _post(f'<p><img src="{shared}"><img src="{dead}"></p>', headimg=shared, n=2)
    feed = EtagFeed(rss_document(seed_item(first, guid="one")))
    local_server.route("/feed.xml", feed)
    config = _config(local_server.url("/feed.xml"))
    assert _run(store, config, posts_dir).new == 1

    second = _post(f'<p>另一篇 <img src="{shared}"><img src="{dead}"></p>', n=3)
    feed.body = rss_document(seed_item(first, guid="one") + seed_item(second, guid="two")).encode()
    report = _run(store, config, posts_dir)

    assert report.new == 1 and report.unchanged == 1, report
    assert len(local_server.requests_to("/img/a.jpg")) == 1
    assert len(local_server.requests_to("/img/dead.jpg")) == 1  # failure remembered
    assert any("dead.jpg kept remote" in n and "not retried yet" in n for n in report.notes)
    bodies = [s.post.body for s in store.iter_posts()]
    assert all(_archived(JPEG, "jpg") in b and shared not in b for b in bodies)


def test_a_removed_image_file_is_fetched_again(
    store: Store, local_server: LocalServer, posts_dir: Path
) -> None:
    local_server.route("/img/a.jpg", _image(JPEG))
    post = _post(f'<p><img src="{local_server.url("/img/a.jpg")}"></p>')
    local_server.route("/feed.xml", EtagFeed(rss_document(seed_item(post))))
    config = _config(local_server.url("/feed.xml"))
    _run(store, config, posts_dir)
    path = posts_dir.parent / "images" / _archived(JPEG, "jpg").rsplit("/", 1)[1]
    path.unlink()
    local_server.route("/feed.xml", EtagFeed(rss_document(seed_item(post)) + " "))
    report = _run(store, config, posts_dir)
    assert report.unchanged == 1 and not report.notes, report
    assert path.read_bytes() == JPEG
    assert len(local_server.requests_to("/img/a.jpg")) == 2


def test_private_image_addresses_are_refused_without_the_opt_out(
    store: Store, local_server: LocalServer, posts_dir: Path
) -> None:
    local_server.route("/img/a.jpg", _image(JPEG))
    post = _post(f'<p><img src="{local_server.url("/img/a.jpg")}"></p>')
    local_server.route("/feed.xml", EtagFeed(rss_document(seed_item(post))))
    config = _config(local_server.url("/feed.xml"), "    allow_private_networks: false\n")
    report = _run(store, config, posts_dir)
    assert report.new == 1 and not local_server.requests_to("/img/a.jpg")
    assert any("loopback" in note for note in report.notes), report.notes


def test_archive_without_an_export_dir_says_so_and_keeps_remote(
    store: Store, local_server: LocalServer
) -> None:
    local_server.route("/img/a.jpg", _image(JPEG))
    body = f'<p><img src="{local_server.url("/img/a.jpg")}"></p>'
    local_server.route("/feed.xml", EtagFeed(rss_document(seed_item(_post(body)))))
    config = _config(local_server.url("/feed.xml"))
    (report,) = asyncio.run(fetch_once(store, config, config.feeds))
    assert report.new == 1
    assert any("needs an export directory" in note for note in report.notes), report.notes
    assert not local_server.requests_to("/img/a.jpg")
    (stored,) = store.iter_posts()
    assert stored.post.body == clean_html(body, base_url=None)


def test_reprocess_keeps_pointing_at_the_archived_images(
    store: Store, local_server: LocalServer, posts_dir: Path
) -> None:
    from aggregator.service.reprocess import reprocess

    local_server.route("/img/a.jpg", _image(JPEG))
    post = _post(f'<p><img src="{local_server.url("/img/a.jpg")}"></p>')
    local_server.route("/feed.xml", EtagFeed(rss_document(seed_item(post))))
    config = _config(local_server.url("/feed.xml"))
    _run(store, config, posts_dir)
    (before,) = store.iter_posts()
    report = reprocess(store, config.feeds, export_dir=posts_dir)
    assert report.unchanged == 1 and report.updated == 0, report
    (after,) = store.iter_posts()
    assert after.post == before.post and _archived(JPEG, "jpg") in after.post.body
    assert len(local_server.requests_to("/img/a.jpg")) == 1
