"""The same posts, byte for byte, before and after a change that means none.

Restructuring (issue 19) and speed work (issue 15) must not change a single
post. This test renders every item of every corpus feed and every seed the
way a fetch does (parse -> build the item -> render the file) and compares a
digest per source file with ``tests/data/golden-posts.json``. When a change
*means* to alter posts (a new clean-up rule, a date fix), regenerate the
digests and say why in the commit::

    AGGREGATOR_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

The file holds only digests of our own output, never the feeds' text.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from feedbuild import CORPUS, corpus_rows, require_corpus
from paths import SEEDS

from aggregator.config.feeds import FeedSpec
from aggregator.hexo.post import parse, render
from aggregator.parse.parser import FeedParseError
from aggregator.service.worker import parse_and_build

GOLDEN = Path(__file__).parent / "data" / "golden-posts.json"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _digest_of_feed(name: str) -> str:
    spec = FeedSpec(
        url=f"https://corpus.example/{name}",
        outlet="语料",
        section="测试",
        group="新媒体",
        timezone="Asia/Shanghai",
    )
    try:
        _, items, skipped = parse_and_build(
            (CORPUS / name).read_bytes(), spec.url, None, None, spec, NOW
        )
    except FeedParseError as exc:
        return f"not a feed: {exc}"
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.key.encode("utf-8", "surrogatepass") + b"\0")
        digest.update(render(item.post).encode("utf-8") + b"\0")
    digest.update(f"skipped={len(skipped)}".encode())
    return digest.hexdigest()


def _current() -> dict[str, str]:
    out = {f"corpus/{row['file']}": _digest_of_feed(row["file"]) for row in corpus_rows()}
    for seed in sorted(SEEDS.glob("*.txt")):
        text = seed.read_text(encoding="utf-8")
        out[f"seeds/{seed.name}"] = hashlib.sha256(render(parse(text)).encode()).hexdigest()
    return out


def test_every_post_is_what_it_was() -> None:
    require_corpus()
    current = _current()
    if os.environ.get("AGGREGATOR_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        pytest.skip(f"{GOLDEN} rewritten ({len(current)} sources)")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    changed = sorted(k for k in golden.keys() & current.keys() if golden[k] != current[k])
    assert not changed, (
        f"{len(changed)} source(s) now give different posts: {changed[:20]}; if that is "
        "intended, regenerate (see this module's docstring) and say why"
    )
    assert current.keys() == golden.keys(), sorted(current.keys() ^ golden.keys())
