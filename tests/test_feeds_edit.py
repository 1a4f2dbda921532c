"""Appending feeds to a hand-written feeds.yaml: every byte a person wrote stays put."""

from __future__ import annotations

from pathlib import Path

import pytest
from paths import REPO

from aggregator.config.edit import (
    FeedsEditError,
    FeedsFile,
    append_feeds,
    build_entry,
    read_defaults,
    rsshub_base_of,
    rsshub_route_of,
    save_feeds_file,
)
from aggregator.config.feeds import ConfigError, loads_config


def inserted_into(original: str, edited: str) -> str:
    """What ``edited`` added to ``original``; fails unless that is all it did."""
    prefix = 0
    while prefix < len(original) and original[prefix] == edited[prefix]:
        prefix += 1
    suffix = len(original) - prefix
    assert edited[len(edited) - suffix :] == original[prefix:], "original bytes changed"
    return edited[prefix : len(edited) - suffix]


NEW = {"url": "https://news.example.com/feed", "outlet": "示例新闻", "section": "2024"}


def test_the_shipped_file_gets_the_entry_appended_in_its_own_style() -> None:
    original = (REPO / "feeds.yaml").read_text(encoding="utf-8")
    edited = append_feeds(original, [NEW])
    assert edited.startswith(original)
    assert edited[len(original) :] == (
        "  - url: https://news.example.com/feed\n"
        "    outlet: 示例新闻\n"
        "    section: '2024'\n"  # quoted: it must stay text, not become a number
    )
    assert loads_config(edited).feeds[-1].section == "2024"


@pytest.mark.parametrize(
    "original",
    [
        # aligned values: ruamel would close the gaps, so the text fallback appends
        "defaults:\n  group: g\nfeeds:\n  - url:     http://a.example/\n    outlet:  A\n"
        "    section: s\n",
        # trailing spaces and a comment after the last feed
        "defaults:\n  group: g   \nfeeds:\n- url: http://a.example/\n  outlet: A\n"
        "  section: s\n# more feeds below\n",
        # no newline at the end of the file
        "defaults: {group: g}\nfeeds:\n    - url: http://a.example/\n      outlet: A\n"
        "      section: s",
    ],
)
def test_formatting_ruamel_would_change_is_kept_byte_for_byte(original: str) -> None:
    edited = append_feeds(original, [NEW])
    assert "url: https://news.example.com/feed" in inserted_into(original, edited)
    feeds = loads_config(edited).feeds
    assert [f.url for f in feeds] == ["http://a.example/", NEW["url"]]
    assert feeds[-1].group == "g"


def test_feeds_in_the_middle_of_the_file_get_an_insertion_and_nothing_else() -> None:
    original = (
        "feeds:\n  - url: http://a.example/\n    outlet: A\n    section: s\n    group: g\n"
        "# where posts go\noutput_dir: out\n"
    )
    edited = append_feeds(original, [{**NEW, "group": "g"}])
    point = original.index("# where")
    assert (
        edited
        == original[:point]
        + (
            "  - url: https://news.example.com/feed\n"
            "    outlet: 示例新闻\n"
            "    section: '2024'\n"
            "    group: g\n"
        )
        + original[point:]
    )


def test_a_feeds_own_commented_out_options_stay_with_it() -> None:
    original = (
        "feeds:\n  - url: http://a.example/\n    outlet:  A\n    section: s\n    group: g\n"
        "    # enabled: false\n\n  # a note for the next feed\n"
    )
    edited = append_feeds(original, [{**NEW, "group": "g"}])
    point = original.index("\n\n  # a note") + 1
    assert edited.startswith(original[:point] + "  - url: https://news.example.com/feed\n")
    assert edited.endswith(original[point:])


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("feeds: []\n", "feeds:\n- url: https://news.example.com/feed\n"),
        (
            "# none yet\nfeeds: []  # add below\noutput_dir: out\n",
            "# none yet\nfeeds: # add below\n  - url: https://news.example.com/feed\n",
        ),
    ],
)
def test_an_empty_flow_list_becomes_a_block_list(original: str, expected: str) -> None:
    edited = append_feeds(original, [{**NEW, "group": "g"}])
    assert edited.startswith(expected)
    assert "output_dir: out" in edited if "output_dir" in original else True
    assert loads_config(edited).feeds[0].url == NEW["url"]


def test_a_file_that_cannot_be_appended_to_gets_the_lines_to_paste() -> None:
    original = "feeds: [{url: 'http://a.example/',   outlet: A, section: s, group: g}]\n"
    with pytest.raises(FeedsEditError, match="by hand") as caught:
        append_feeds(original, [NEW])
    assert "- url: https://news.example.com/feed" in str(caught.value)


def test_entries_leave_out_what_defaults_give_and_use_rsshub_routes() -> None:
    defaults = read_defaults(
        "defaults:\n  group: 新媒体\n  interval: 15m\n  rsshub_base: http://127.0.0.1:1200\n"
        "feeds: []\n"
    )
    entry = build_entry(
        url="http://127.0.0.1:1200/guancha/world?limit=5",
        outlet="观察者网",
        section="国际",
        group="新媒体",
        defaults=defaults,
        settings={"interval": "900", "enabled": False},
    )
    assert entry == {
        "rsshub": "/guancha/world?limit=5",
        "outlet": "观察者网",
        "section": "国际",
        "enabled": False,
    }


def test_rsshub_routes_are_read_off_urls_exactly() -> None:
    base = "https://rsshub.example.com/prefix?key=secret"
    assert rsshub_route_of("https://rsshub.example.com/prefix/a/b?key=secret", base) == "/a/b"
    assert rsshub_route_of("https://rsshub.example.com/other/a/b?key=secret", base) is None
    assert rsshub_route_of("https://elsewhere.example.com/prefix/a/b", base) is None
    assert rsshub_base_of("http://127.0.0.1:1200/guancha/headline", "/guancha/headline") == (
        "http://127.0.0.1:1200"
    )
    assert rsshub_base_of("http://127.0.0.1:1200/other", "/guancha/headline") is None


def test_a_save_that_does_not_load_back_restores_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "feeds.yaml"
    original = "defaults: {group: g}\nfeeds: []\n"
    path.write_text(original, encoding="utf-8")
    feeds_file = FeedsFile.read(path)

    def broken(_: Path) -> None:
        raise ConfigError("feeds.yaml:1: changed under our feet")

    monkeypatch.setattr("aggregator.config.edit.load_config", broken)
    with pytest.raises(ConfigError):
        save_feeds_file(feeds_file, append_feeds(original, [NEW]))
    assert path.read_text(encoding="utf-8") == original
    assert [p.name for p in tmp_path.iterdir()] == ["feeds.yaml"]  # no temporary left


def test_an_invalid_edit_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    original = "defaults: {group: g}\nfeeds: []\n"
    path.write_text(original, encoding="utf-8")
    with pytest.raises(ConfigError, match="interval"):
        save_feeds_file(FeedsFile.read(path), append_feeds(original, [{**NEW, "interval": "x"}]))
    assert path.read_text(encoding="utf-8") == original


def test_a_symlinked_file_is_edited_through_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text("defaults: {group: g}\nfeeds: []\n", encoding="utf-8")
    link = tmp_path / "feeds.yaml"
    link.symlink_to(real)
    feeds_file = FeedsFile.read(link)
    save_feeds_file(feeds_file, append_feeds(feeds_file.text, [NEW]))
    assert link.is_symlink()
    assert NEW["url"] in real.read_text(encoding="utf-8")
