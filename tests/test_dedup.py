"""The dedup policy as data: what counts as the same item."""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.dedup import (
    Known,
    Outcome,
    StoredIdentity,
    canonical_link,
    content_hash,
    decide,
    entry_key,
    fallback_match,
    slug_for,
    text_of,
)


def test_hash_ignores_markup_whitespace_and_width_variants() -> None:
    a = content_hash("乌克兰 战争", "<p>第一段</p>\n<p>第二段 <img src='a.jpg'></p>")
    b = content_hash(
        "乌克兰  战争 ",
        '<div><p>第一段</p> <p>第二段<img src="b.jpg" referrerpolicy="no-referrer"></p></div>',
    )
    # NFKC folds full-width forms: ＡＢＣ is ABC.
    c = content_hash("ＡＢＣ", "<p>x</p>")
    assert a == b
    assert c == content_hash("ABC", "x")


# The content hash is stored and compared across versions: its value must
# never change.  This is the definition it had before it was made faster.
_REF_TAG = re.compile(r"<!--.*?-->|<[^>]*>", re.S)
_REF_SPACE = re.compile(r"\s+")


def _reference_text_of(body_html: str) -> str:
    text = html.unescape(_REF_TAG.sub(" ", body_html))
    return _REF_SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def _reference_hash(title: str, body_html: str) -> str:
    norm_title = _REF_SPACE.sub(" ", unicodedata.normalize("NFKC", title)).strip()
    return hashlib.sha256(f"{norm_title}\x00{_reference_text_of(body_html)}".encode()).hexdigest()


def test_hash_value_is_pinned() -> None:
    title, body = "乌克兰（Ukraine）：战争", "<p>第一段，&amp; ＡＢＣ\u3000…</p>\n<p>ﬁ  e\u0301</p>"
    assert content_hash(title, body) == _reference_hash(title, body)
    assert content_hash(title, body) == (
        "a1c9c29c12bcfe91c67a98bea034028b46ff805e7b4e69be201a37590d1bc3d0"
    )


# Width variants next to combining marks, Hangul jamo and syllables,
# ligatures, compatibility ideographs, no-break and ideographic spaces: the
# places where a shortcut for NFKC could go wrong.
_TRICKY = st.sampled_from(
    [
        *"aeAＡｅ，（）：；？！\u3000\u00a0\u2002…ﬁ²½㍱㌀\uf900\u2126",
        *["\u0301", "\u0308", "\u0327", "\u0323", "\u3099", "\uff9e", "\uff9f"],
        *["\u1100", "\u1161", "\u11a8", "\uac00", "ｶ", "ﾊ", "か", "\u0345", "\u0f73"],
        *" \t\n<>&;#p/",
        *["&amp;", "&#65312;", "<p>", "<!-- x -->", "\u3000\n"],
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_TRICKY, max_size=40).map("".join), st.text(max_size=30))
def test_hash_and_text_equal_the_reference_definition(tricky: str, anything: str) -> None:
    for body in (tricky, anything, tricky + anything):
        assert text_of(body) == _reference_text_of(body)
        assert content_hash(body, body) == _reference_hash(body, body)


def test_hash_changes_with_the_words() -> None:
    assert content_hash("t", "<p>one</p>") != content_hash("t", "<p>two</p>")
    assert content_hash("t1", "<p>one</p>") != content_hash("t2", "<p>one</p>")


def test_text_of_decodes_entities_and_drops_comments() -> None:
    assert text_of("<!-- x --><p>a &amp; b&#123;</p>") == "a & b{"


@pytest.mark.parametrize(
    ("guid", "link", "title", "expected"),
    [
        ("g-1", "https://x/1", "t", "guid:g-1"),
        ("  ", "https://x/1", "t", "link://x/1"),
        (None, "http://X/1/?utm_source=rss#top", "t", "link://x/1"),
        (None, None, "A  title", "title:A title|2022-03-01T00:00:00+00:00"),
    ],
)
def test_entry_key_prefers_guid_then_link_then_title_and_date(
    guid: str | None, link: str | None, title: str, expected: str
) -> None:
    assert entry_key(guid, link, title, datetime(2022, 3, 1, tzinfo=UTC)) == expected


def test_slug_is_date_and_hash_prefix() -> None:
    assert (
        slug_for(datetime(2022, 3, 1, 23, 59, tzinfo=UTC), "abcdef0123456789")
        == "2022-03-01-abcdef012345"
    )
    assert slug_for(None, "abcdef0123456789") == "undated-abcdef012345"


@pytest.mark.parametrize(
    ("known", "incoming", "expected"),
    [
        (Known(None, None, None), "h1", Outcome.NEW),
        (Known(None, None, 7), "h1", Outcome.DUPLICATE),
        (Known(3, "h1", 3), "h1", Outcome.UNCHANGED),
        (Known(3, "h0", None), "h1", Outcome.UPDATED),
        (Known(3, "h0", 9), "h1", Outcome.DUPLICATE),
    ],
)
def test_decide(known: Known, incoming: str, expected: Outcome) -> None:
    assert decide(known, incoming) is expected


@pytest.mark.parametrize(
    ("link", "canonical"),
    [
        # tracking parameters go, the others keep their order
        ("https://n.cn/a?utm_source=rss&id=7&utm_medium=x", "//n.cn/a?id=7"),
        ("https://n.cn/a?spm=a2h0k.1&from=timeline&id=7", "//n.cn/a?id=7"),
        ("https://n.cn/a?b=2&a=1&fbclid=IwAR0&gclid=x&mc_cid=1&mc_eid=2", "//n.cn/a?b=2&a=1"),
        ("https://n.cn/a?yclid=1&igshid=2&share_token=3&UTM_Campaign=4", "//n.cn/a"),
        # scheme, host case, default port, trailing slash and fragment fold
        ("HTTP://News.Example.COM:80/Story/", "//news.example.com/Story"),
        ("https://news.example.com:443/story#comments", "//news.example.com/story"),
        ("https://news.example.com/", "//news.example.com"),
        ("https://news.example.com", "//news.example.com"),
        # what does identify the page is kept
        ("https://news.example.com:8443/story", "//news.example.com:8443/story"),
        ("https://n.cn/Story?ID=7", "//n.cn/Story?ID=7"),
        ("https://n.cn/a?from_id=3&fromage=1", "//n.cn/a?from_id=3&fromage=1"),
        ("https://n.cn/搜索?q=中文", "//n.cn/搜索?q=%E4%B8%AD%E6%96%87"),
        # not an http(s) URL: compared as written
        ("  urn:uuid:1234 ", "urn:uuid:1234"),
        ("", None),
        (None, None),
    ],
)
def test_canonical_link(link: str | None, canonical: str | None) -> None:
    assert canonical_link(link) == canonical


def test_links_that_differ_only_by_tracking_and_scheme_are_one_key() -> None:
    day = datetime(2022, 3, 1, tzinfo=UTC)
    plain = entry_key(None, "https://n.cn/a/1", "t", day)
    assert entry_key(None, "http://n.cn/a/1/?utm_source=weibo#x", "t", day) == plain


@pytest.mark.parametrize(
    ("identity", "guid", "link", "title", "expected"),
    [
        ("guid", "g-1", "https://x/1", "T", "guid:g-1"),
        ("guid", None, "https://x/1", "T", "link://x/1"),
        ("link", "g-1", "https://x/1?utm_source=a", "T", "link://x/1"),
        ("link", "g-1", None, "T", "guid:g-1"),
        ("title", "g-1", "https://x/1", " 标题  一 ", "title:标题 一"),
        ("title", "g-1", "https://x/1", "ＡＢＣ", "title:ABC"),
        ("title", "g-1", "https://x/1", "", "guid:g-1"),
        ("title", None, None, "", "title:|2022-03-01T00:00:00+00:00"),
        ("link", None, None, "T", "title:T|2022-03-01T00:00:00+00:00"),
    ],
)
def test_identity_setting_reorders_the_key_fields(
    identity, guid: str | None, link: str | None, title: str, expected: str
) -> None:
    key = entry_key(guid, link, title, datetime(2022, 3, 1, tzinfo=UTC), identity=identity)
    assert key == expected


def test_unknown_identity_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown identity 'url'"):
        entry_key("g", None, "t", None, identity="url")  # type: ignore[arg-type]


def _stored(entry_id: int, key: str, guid=None, link=None, title="old") -> StoredIdentity:
    return StoredIdentity(entry_id, key, guid, canonical_link(link), title)


def _match(candidates, *, guid=None, link=None, title="t", identity="guid", batch=(), links=None):
    return fallback_match(
        guid=guid,
        link=link,
        title=title,
        identity=identity,
        candidates=candidates,
        batch_keys=set(batch),
        batch_link_counts=links or {},
    )


def test_fallback_same_guid_is_the_same_item_whatever_its_old_key() -> None:
    old = _stored(1, "link://x/1", guid="g-1", link="https://x/1")
    assert _match([old], guid="g-1", link="https://x/2", identity="link") is old


def test_fallback_new_guid_same_canonical_link_is_an_edit() -> None:
    old = _stored(1, "guid:g-1", guid="g-1", link="https://x/1")
    found = _match(
        [old], guid="g-2", link="http://x/1?utm_source=rss", batch=["guid:g-2"], links={"//x/1": 1}
    )
    assert found is old


def test_fallback_old_raw_link_keys_are_found_by_canonical_link() -> None:
    """Entries keyed before links were canonicalised still match."""
    old = _stored(1, "link:https://x/1?spm=1", link="https://x/1?spm=1")
    assert _match([old], link="https://x/1", batch=["link://x/1"]) is old


def test_fallback_link_is_not_used_when_ambiguous() -> None:
    old = _stored(1, "guid:g-1", guid="g-1", link="https://x/")
    # The old item is still in the feed: the new one is another item.
    assert _match([old], guid="g-2", link="https://x/", batch=["guid:g-1", "guid:g-2"]) is None
    # Several items of this fetch share the link (a homepage): no guessing.
    assert _match([old], guid="g-2", link="https://x/", links={"//x": 2}) is None


def test_fallback_title_only_with_title_identity() -> None:
    old = _stored(1, "guid:g-1", guid="g-1", link="https://x/1", title="标题 一")
    kwargs = {"guid": "g-9", "link": "https://x/9", "title": "标题  一"}
    assert _match([old], **kwargs) is None
    assert _match([old], identity="title", **kwargs) is old


def test_fallback_nothing_matches_means_new() -> None:
    assert _match([], guid="g", link="https://x/1") is None
