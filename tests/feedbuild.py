"""Test helpers: where the data lives, and RSS documents built from seed posts."""

from __future__ import annotations

import csv
from html import escape
from pathlib import Path

import pytest

from aggregator.post import Post, format_date

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
#: Real-world feeds, read in place (never copied into the repo).
CORPUS = REPO.parent / "shared" / "corpus"

RSS_NAMESPACES = (
    'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
    'xmlns:media="http://search.yahoo.com/mrss/"'
)


def seed_paths() -> list[Path]:
    return sorted(SEEDS.glob("*.txt"))


def corpus_rows() -> list[dict[str, str]]:
    """MANIFEST.tsv rows, or [] when the corpus is absent (tests then skip)."""
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def require_corpus() -> Path:
    if not (CORPUS / "MANIFEST.tsv").is_file():
        pytest.skip(f"corpus not found at {CORPUS}")
    return CORPUS


def rss_document(items: str, *, channel_extra: str = "", encoding: str = "utf-8") -> str:
    """An RSS 2.0 document around ``items`` (already XML)."""
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        f'<rss version="2.0" {RSS_NAMESPACES}><channel>'
        "<title>Test channel</title><link>https://news.example.com/</link>"
        f"{channel_extra}{items}</channel></rss>"
    )


def seed_item(post: Post, *, body_in: str = "content", thumbnail: bool = True) -> str:
    """An RSS item carrying a seed's title, date, body and (optionally) image.

    ``body_in`` is ``"content"`` (content:encoded, CDATA), ``"description"``
    (escaped text) or ``"description-cdata"``.
    """
    if body_in == "content":
        body = (
            "<description>summary</description>"
            f"<content:encoded><![CDATA[{post.body}]]></content:encoded>"
        )
    elif body_in == "description":
        body = f"<description>{escape(post.body, quote=False)}</description>"
    else:
        body = f"<description><![CDATA[{post.body}]]></description>"
    image = f'<media:thumbnail url="{escape(post.headimg)}"/>' if thumbnail and post.headimg else ""
    return (
        f"<item><title>{escape(post.title, quote=False)}</title>"
        f"<link>https://news.example.com/story</link>"
        f'<guid isPermaLink="false">seed-{format_date(post.date)}</guid>'
        f"<pubDate>{format_date(post.date)}</pubDate>{image}{body}</item>"
    )
