"""The decide step of ingest, alone: items and facts in, verdicts out, no database.

``aggregator.store.ingest.plan`` walks a fetch's items in feed order over
plain values (``Facts``); the same cases through a real database are in
tests/test_store.py and tests/test_dedup.py.  Posts this fetch creates are
named -1, -2, ... in the verdicts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aggregator.hexo.post import Post
from aggregator.policy.dedup import Outcome, content_hash
from aggregator.store.ingest import Facts, Verdict, plan
from aggregator.store.records import IngestItem

NEW, DUPLICATE = Outcome.NEW, Outcome.DUPLICATE
UPDATED, UNCHANGED = Outcome.UPDATED, Outcome.UNCHANGED


def _item(
    key: str, title: str, body: str = "<p>正文</p>", raw: dict[str, Any] | None = None
) -> IngestItem:
    post = Post(
        title=title,
        group="g",
        outlet="o",
        section="s",
        body=body,
        date=datetime(2024, 5, 1, tzinfo=UTC),
    )
    return IngestItem(key=key, post=post, raw=raw)


def _plan(items: list[IngestItem], facts: Facts | None = None) -> list[Verdict]:
    return plan({item.key: item for item in items}, facts or Facts())


def _stored(facts: Facts, key: str, post_id: int, title: str, body: str = "<p>正文</p>") -> None:
    """The feed has an entry under ``key`` whose post ``post_id`` has this content."""
    digest = content_hash(title, body)
    facts.entry_post[key] = post_id
    facts.entry_raw[key] = {"format": 1}
    facts.content[post_id] = (digest, title, body)
    facts.by_hash[digest] = post_id


def test_a_cold_fetch_is_all_new() -> None:
    assert _plan([_item("a", "甲"), _item("b", "乙")]) == [Verdict("a", NEW), Verdict("b", NEW)]


def test_the_same_story_twice_in_one_fetch_is_a_duplicate_of_the_new_post() -> None:
    """The second needs the first's id: the new posts so far are written first, once."""
    verdicts = _plan([_item("a", "甲"), _item("b", "甲"), _item("c", "乙"), _item("d", "甲")])
    assert verdicts == [
        Verdict("a", NEW),
        Verdict("b", DUPLICATE, owner=-1, write_new_first=True),
        Verdict("c", NEW),
        Verdict("d", DUPLICATE, owner=-1),
    ]


def test_a_seen_entry_is_unchanged_and_refreshed_only_when_its_raw_form_is_old() -> None:
    facts = Facts()
    _stored(facts, "a", 1, "甲")
    _stored(facts, "b", 2, "乙")
    items = [_item("a", "甲", raw={"format": 1}), _item("b", "乙", raw={"format": 2})]
    verdicts = _plan(items, facts)
    assert verdicts == [Verdict("a", UNCHANGED), Verdict("b", UNCHANGED, refresh_entry=True)]
    facts.rekeyed = {"a"}
    assert _plan([_item("a", "甲", raw={"format": 1})], facts)[0].refresh_entry


def test_an_article_page_is_kept_once_there_is_one() -> None:
    facts = Facts()
    _stored(facts, "a", 1, "甲")
    item = _item("a", "甲", raw={"format": 1, "page": {"url": "u"}})
    assert _plan([item], facts) == [Verdict("a", UNCHANGED, refresh_entry=True)]


def test_an_edit_updates_the_post_and_a_later_copy_of_the_edit_is_its_duplicate() -> None:
    facts = Facts()
    _stored(facts, "a", 1, "甲")
    verdicts = _plan([_item("a", "甲 改"), _item("z", "甲 改")], facts)
    assert verdicts == [Verdict("a", UPDATED), Verdict("z", DUPLICATE, owner=1)]


def test_changed_content_under_a_shared_key_is_a_new_story_and_takes_the_key() -> None:
    facts = Facts()
    _stored(facts, "link:https://x/", 1, "甲")
    facts.shared = {"link:https://x/"}
    assert _plan([_item("link:https://x/", "乙")], facts) == [
        Verdict("link:https://x/", NEW, release_key=True)
    ]


def test_content_a_post_had_before_an_edit_is_that_post() -> None:
    facts = Facts(former={content_hash("甲", "<p>正文</p>"): [7, 3]})
    assert _plan([_item("a", "甲"), _item("b", "甲")], facts) == [
        Verdict("a", DUPLICATE, owner=7),
        Verdict("b", DUPLICATE, owner=7),
    ]


def test_same_title_and_body_under_a_new_hash_rule_takes_the_new_hash() -> None:
    facts = Facts()
    title, body = "甲", "<p>正文</p>"
    facts.entry_post["a"] = 1
    facts.entry_raw["a"] = {"format": 1}
    facts.content[1] = ("old-rule-hash", title, body)
    facts.by_hash["old-rule-hash"] = 1
    verdicts = _plan([_item("a", title, body, raw={"format": 1}), _item("b", title, body)], facts)
    assert verdicts == [Verdict("a", UNCHANGED, rehash=True), Verdict("b", DUPLICATE, owner=1)]


def test_the_facts_are_not_changed_by_planning() -> None:
    facts = Facts()
    _stored(facts, "a", 1, "甲")
    before = (dict(facts.content), dict(facts.by_hash))
    _plan([_item("a", "甲 改"), _item("b", "乙")], facts)
    assert (facts.content, facts.by_hash) == before
