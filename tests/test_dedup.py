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
from paths import CORPUS

from aggregator.policy.dedup import (
    KeyFacts,
    Known,
    Outcome,
    StoredIdentity,
    canonical_link,
    content_hash,
    decide,
    entry_key,
    entry_keys,
    fallback_match,
    free_slug,
    media_of,
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


def test_compat_forms_equal_the_regex_substitution_over_the_corpus() -> None:
    """``_compat_forms`` (split and join) against the one-call-per-match
    substitution it replaced, and ``text_of`` against the plain NFKC
    definition, over every document of the corpus read as text, in slices
    (Chinese, Japanese, Korean, Cyrillic feeds in many encodings)."""
    from aggregator.policy import dedup

    def substituted(text: str) -> str:
        return re.sub(
            "[" + "".join(re.escape(c) for c in dedup._COMPAT) + "]",
            lambda match: dedup._COMPAT[match.group()],
            text,
        )

    files = sorted(p for p in CORPUS.iterdir() if p.suffix in (".xml", ".rss", ".atom", ".rdf"))
    if not files:
        pytest.skip(f"no corpus at {CORPUS}")
    replaced = 0
    for path in files:
        data = path.read_bytes()
        for encoding in ("utf-8", "gb18030", "big5", "shift_jis"):
            text = data.decode(encoding, "replace")
            for at in range(0, len(text), 4096):
                chunk = text[at : at + 4096]
                assert dedup._compat_forms(chunk) == substituted(chunk)
                assert text_of(chunk) == _reference_text_of(chunk)
                replaced += chunk != dedup._compat_forms(chunk)
    assert replaced > 100  # the corpus does exercise the replacement


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
        # the incoming content is an earlier version of the entry's own post:
        # a stale copy (a second feed), never a reason to revert the post
        (Known(3, "h2", None, frozenset({3})), "h1", Outcome.UNCHANGED),
        # ... of another post: that post's duplicate
        (Known(3, "h2", None, frozenset({8})), "h1", Outcome.DUPLICATE),
        (Known(None, None, None, frozenset({8})), "h1", Outcome.DUPLICATE),
        # the same title and body under a changed hash rule is no edit
        (Known(3, "h0", None, same_content=True), "h1", Outcome.UNCHANGED),
        # changed content under a GUID or link other stories share: a new story
        (Known(3, "h0", None, shared_key=True), "h1", Outcome.NEW),
        (Known(3, "h1", 3, shared_key=True), "h1", Outcome.UNCHANGED),
        (Known(3, "h0", 9, shared_key=True), "h1", Outcome.DUPLICATE),
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
        # a fragment that routes a single-page site names the page; anchors do not
        ("https://spa.example.com/#/post/12", "//spa.example.com#/post/12"),
        ("https://spa.example.com/app/#!/post/12?x=1", "//spa.example.com/app#!/post/12?x=1"),
        ("https://spa.example.com/#!post-12", "//spa.example.com#!post-12"),
        ("https://n.cn/a?utm_source=x#/b", "//n.cn/a#/b"),
        ("https://spa.example.com/#/", "//spa.example.com"),
        ("https://spa.example.com/#!", "//spa.example.com"),
        ("https://n.cn/a#section-2", "//n.cn/a"),
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


def _match(
    candidates,
    *,
    guid=None,
    link=None,
    title="t",
    identity="guid",
    batch=(),
    links=None,
    guids=None,
):
    return fallback_match(
        guid=guid,
        link=link,
        title=title,
        identity=identity,
        candidates=candidates,
        batch_keys=set(batch),
        batch_link_counts=links or {},
        batch_guid_counts=guids,
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


def test_fallback_a_guid_shared_in_this_fetch_matches_nothing() -> None:
    old = _stored(1, "guid:g", guid="g", link="https://x/1")
    assert _match([old], guid="g", link="https://x/2", identity="link") is old
    # Two items of the fetch carry the GUID: it names neither of them.
    assert _match([old], guid="g", link="https://x/2", identity="link", guids={"g": 2}) is None


@pytest.mark.parametrize(
    ("others", "kwargs"),
    [
        # two stored entries have the link (a homepage every item linked)
        ([_stored(2, "link://x|title:b", link="https://x/")], {"link": "https://x/"}),
        # two stored entries have the GUID
        ([_stored(2, "guid:g|title:b", guid="g")], {"guid": "g"}),
        # two stored entries have the headline
        ([_stored(2, "guid:h", title="标题")], {"title": "标题", "identity": "title"}),
    ],
)
def test_fallback_is_ambiguous_when_several_stored_entries_match(
    others: list[StoredIdentity], kwargs: dict[str, str]
) -> None:
    one = _stored(1, "link://x|title:a", guid="g", link="https://x/", title="标题")
    assert _match([one], **kwargs) is one
    assert _match([one, *others], **kwargs) is None


def _facts(guid=None, link=None, title="t", digest="d0", date=None) -> KeyFacts:
    return KeyFacts(guid, link, title, date, digest)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        # unique identifiers: exactly entry_key's keys, so stored keys stay valid
        (
            [_facts("g1", "https://x/1"), _facts("g2", "https://x/1")],
            ["guid:g1", "guid:g2"],
        ),
        (
            [_facts(None, "https://x/1"), _facts(None, "https://x/2?utm_source=a")],
            ["link://x/1", "link://x/2"],
        ),
        # every item links the homepage, no GUID: link + headline
        (
            [_facts(None, "https://x/", "甲"), _facts(None, "http://x", "乙 ")],
            ["link://x|title:甲", "link://x|title:乙"],
        ),
        # one GUID for all: the link where it is unique, else GUID + headline
        (
            [
                _facts("g", "https://x/1", "甲"),
                _facts("g", "https://x/2", "乙"),
                _facts("g", "https://x/2", "丙"),
            ],
            ["link://x/1", "guid:g|title:乙", "guid:g|title:丙"],
        ),
        # links that differ only by an anchor are one link; by a route, two
        (
            [_facts(None, "https://x/a#p1", "甲"), _facts(None, "https://x/a#p2", "乙")],
            ["link://x/a|title:甲", "link://x/a|title:乙"],
        ),
        (
            [_facts(None, "https://x/#/p/1", "甲"), _facts(None, "https://x/#/p/2", "甲")],
            ["link://x#/p/1", "link://x#/p/2"],
        ),
        # pictures under one headline and one link: told apart by content
        (
            [
                _facts(None, "https://x/", "图", "a" * 64),
                _facts(None, "https://x/", "图", "b" * 64),
            ],
            ["link://x|title:图|sha256:" + "a" * 32, "link://x|title:图|sha256:" + "b" * 32],
        ),
        # the same story listed twice: one key (the store keeps the first)
        (
            [
                _facts(None, "https://x/", "图", "a" * 64),
                _facts(None, "https://x/", "图", "a" * 64),
            ],
            ["link://x|title:图|sha256:" + "a" * 32] * 2,
        ),
        # nothing but a headline and no date: the headline, then the content
        (
            [
                _facts(None, None, "甲"),
                _facts(None, None, "甲", "c" * 64),
                _facts(None, None, "乙"),
            ],
            ["title:甲||sha256:d0", "title:甲||sha256:" + "c" * 32, "title:乙|"],
        ),
    ],
)
def test_entry_keys_use_an_identifier_only_where_the_document_has_it_once(
    items: list[KeyFacts], expected: list[str]
) -> None:
    assert entry_keys(items) == expected


def test_entry_keys_follow_the_identity_setting() -> None:
    items = [_facts("g1", "https://x/", "甲"), _facts("g2", "https://x/", "甲")]
    assert entry_keys(items, identity="link") == ["guid:g1", "guid:g2"]
    assert entry_keys(items, identity="title") == ["guid:g1", "guid:g2"]
    titled = [_facts("g", "https://x/", "甲"), _facts("g", "https://x/", "乙")]
    assert entry_keys(titled, identity="title") == ["title:甲", "title:乙"]
    assert entry_keys(titled, identity="guid") == ["guid:g|title:甲", "guid:g|title:乙"]
    assert entry_keys(titled, identity="link") == ["link://x|title:甲", "link://x|title:乙"]
    with pytest.raises(ValueError, match="unknown identity 'url'"):
        entry_keys(items, identity="url")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([None, "g1", "g2"]),
            st.sampled_from([None, "https://x/", "https://x/1", "https://x/#/2"]),
            st.sampled_from(["甲", "乙", ""]),
            st.sampled_from(["a" * 64, "b" * 64]),
        ),
        max_size=8,
    )
)
def test_entry_keys_differ_unless_the_items_are_the_same_story(
    rows: list[tuple[str | None, str | None, str, str]],
) -> None:
    items = [_facts(guid, link, title, digest) for guid, link, title, digest in rows]
    keys = entry_keys(items)
    for i, a in enumerate(items):
        for j, b in enumerate(items[:i]):
            if keys[i] == keys[j]:
                assert (a.title, a.digest) == (b.title, b.digest), (a, b, keys[i])
        # A GUID unique in the document keeps the key it always had.
        if a.guid and sum(1 for other in items if other.guid == a.guid) == 1:
            assert keys[i] == entry_key(a.guid, a.link, a.title, a.date)


def test_overlong_built_keys_are_hashed_to_fit_the_column() -> None:
    long_link = "https://x/" + "a" * 3000
    keys = entry_keys([_facts(None, long_link, "甲"), _facts(None, long_link, "乙")])
    assert all(key.startswith("sha256:") and len(key) == 71 for key in keys)
    assert keys[0] != keys[1]


def test_text_less_bodies_are_told_apart_by_their_media() -> None:
    one = '<p><img src="https://img.x/1.jpg"></p>'
    two = "<p><img alt='' src='https://img.x/2.jpg'></p>"
    assert media_of(one + '<video poster="p.jpg" src=https://v.x/a.mp4></video>') == [
        "https://img.x/1.jpg",
        "https://v.x/a.mp4",
    ]
    assert content_hash("图", one) != content_hash("图", two)
    assert content_hash("图", one) == content_hash("图", f"<div>{one}</div>")
    # With text, media play no part, as before (stored hashes stay valid).
    assert content_hash("图", "<p>字</p>" + one) == content_hash("图", "<p>字</p>" + two)
    assert content_hash("图", "<p>字</p>" + one) == _reference_hash("图", "<p>字</p>" + one)
    # No text and no media: the title alone, as before.
    assert content_hash("图", "<p> </p>") == _reference_hash("图", "<p> </p>")


def test_free_slug_takes_the_next_free_variant() -> None:
    assert free_slug("2024-05-01-abc", set()) == "2024-05-01-abc"
    assert free_slug("2024-05-01-abc", {"2024-05-01-abc"}) == "2024-05-01-abc-2"
    taken = {"2024-05-01-abc", "2024-05-01-abc-2", "2024-05-01-abc-3"}
    assert free_slug("2024-05-01-abc", taken) == "2024-05-01-abc-4"
