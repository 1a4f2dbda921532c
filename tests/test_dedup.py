"""The dedup policy as data: what counts as the same item."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.dedup import Known, Outcome, content_hash, decide, entry_key, slug_for, text_of


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


def test_hash_changes_with_the_words() -> None:
    assert content_hash("t", "<p>one</p>") != content_hash("t", "<p>two</p>")
    assert content_hash("t1", "<p>one</p>") != content_hash("t2", "<p>one</p>")


def test_text_of_decodes_entities_and_drops_comments() -> None:
    assert text_of("<!-- x --><p>a &amp; b&#123;</p>") == "a & b{"


@pytest.mark.parametrize(
    ("guid", "link", "title", "expected"),
    [
        ("g-1", "https://x/1", "t", "guid:g-1"),
        ("  ", "https://x/1", "t", "link:https://x/1"),
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
