"""Specification of ``feeds.yaml`` loading (``aggregator.config.feeds``).

Error tests assert on the line number and the key, because "which line do I
fix" is the whole point of a config error.
"""

from __future__ import annotations

import dataclasses
import logging
import textwrap
from dataclasses import FrozenInstanceError
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paths import REPO

from aggregator.config import feeds as feeds_module
from aggregator.config.feeds import (
    DEFAULT_INTERVAL,
    Config,
    ConfigError,
    ConfigIssue,
    FeedSpec,
    FullText,
    format_duration,
    join_rsshub,
    load_config,
    loads_config,
    normalise_url,
    parse_duration,
)
from aggregator.hexo.post import parse

ROOT = Path(__file__).resolve().parent.parent

BRIEF_EXAMPLE = """\
defaults:                  # optional; any feed key can be defaulted here
  group: 新媒体             # first category
  interval: 15m
feeds:
  - url: https://chinese.aljazeera.net/feed      # or an RSSHub route, see below
    outlet: Aljazeera 半岛网   # second category, and the `author:` line
    section: 新闻              # third category
    interval: 30m             # optional: 90s, 15m, 1h or seconds; >= 1s (warn < 60s)
    enabled: true             # optional
    full_text:                # optional: replace the body with the article page
      selector: .article-content
      remove: [.ad, .related]
"""


def load(text: str) -> Config:
    return loads_config(textwrap.dedent(text))


def issues(text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        loads_config(textwrap.dedent(text))
    assert caught.value.issues, "every loading error should be a located issue"
    return list(caught.value.issues)


def only_issue(text: str) -> ConfigIssue:
    found = issues(text)
    assert len(found) == 1, [str(i) for i in found]
    return found[0]


# --------------------------------------------------------------------------
# Files that must load
# --------------------------------------------------------------------------


def test_shipped_feeds_yaml_loads_with_the_seed_outlets() -> None:
    config = load_config(ROOT / "feeds.yaml")

    assert config.source == ROOT / "feeds.yaml"
    assert config.warnings == ()
    aljazeera, guancha = config.feeds
    assert aljazeera.url == "https://chinese.aljazeera.net/feed"
    assert aljazeera.interval == timedelta(minutes=30)
    assert aljazeera.rsshub_route is None
    assert guancha.url == "http://127.0.0.1:1200/guancha/headline"
    assert guancha.rsshub_route == "/guancha/headline"
    assert guancha.interval == timedelta(minutes=15)
    assert config.enabled_feeds() == config.feeds


def test_shipped_feeds_yaml_covers_every_seed_category() -> None:
    config = load_config(ROOT / "feeds.yaml")
    configured = {feed.categories for feed in config.feeds}
    seeds = sorted((ROOT / "seeds").glob("*.txt"))
    assert seeds
    for seed in seeds:
        post = parse(seed.read_text(encoding="utf-8"), source=str(seed))
        assert post.categories in configured, seed.name
        assert post.author == post.outlet


def test_example_from_the_documentation_loads() -> None:
    config = loads_config(BRIEF_EXAMPLE)

    (feed,) = config.feeds
    assert feed == FeedSpec(
        url="https://chinese.aljazeera.net/feed",
        outlet="Aljazeera 半岛网",
        section="新闻",
        group="新媒体",
        interval=timedelta(minutes=30),
        enabled=True,
        full_text=FullText(selector=".article-content", remove=(".ad", ".related")),
        placeholder_image="",
        rsshub_route=None,
    )
    assert feed.line == 5
    assert feed.categories == ("新媒体", "Aljazeera 半岛网", "新闻")
    assert config.output_dir is None
    assert config.source is None


def test_empty_feed_list_is_a_valid_idle_daemon() -> None:
    config = load("feeds: []\n")
    assert config.feeds == ()
    assert config.enabled_feeds() == ()


def test_minimal_feed_gets_built_in_defaults() -> None:
    (feed,) = load(
        """\
        feeds:
          - {url: "https://a.example/rss", outlet: A, section: S, group: G}
        """
    ).feeds
    assert feed.interval == DEFAULT_INTERVAL == timedelta(minutes=15)
    assert feed.enabled is True
    assert feed.full_text is None
    assert feed.placeholder_image == ""
    assert feed.rsshub_route is None


def test_results_are_immutable() -> None:
    config = loads_config(BRIEF_EXAMPLE)
    with pytest.raises(FrozenInstanceError):
        config.feeds[0].url = "https://elsewhere.example/"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        config.output_dir = Path("/tmp")  # type: ignore[misc]


# --------------------------------------------------------------------------
# Defaults
# --------------------------------------------------------------------------

DEFAULTS_FILE = """\
defaults:
  group: 新媒体
  interval: 1h
  enabled: false
  placeholder_image: https://img.example/none.png
  full_text: {selector: article}
  outlet: Default Outlet
feeds:
  - url: https://a.example/rss
    section: A
  - url: https://b.example/rss
    section: B
    group: 旧媒体
    interval: 5m
    enabled: true
    placeholder_image: ""
    full_text: {selector: .body, remove: [.ad]}
    outlet: B Outlet
  - url: https://c.example/rss
    section: C
    full_text: null
"""


def test_defaults_apply_to_feeds_that_do_not_set_a_key() -> None:
    inherits = load(DEFAULTS_FILE).feeds[0]
    assert inherits.group == "新媒体"
    assert inherits.interval == timedelta(hours=1)
    assert inherits.enabled is False
    assert inherits.placeholder_image == "https://img.example/none.png"
    assert inherits.full_text == FullText("article")
    assert inherits.outlet == "Default Outlet"


def test_a_feeds_own_values_win_over_defaults() -> None:
    overrides = load(DEFAULTS_FILE).feeds[1]
    assert overrides.group == "旧媒体"
    assert overrides.interval == timedelta(minutes=5)
    assert overrides.enabled is True
    assert overrides.placeholder_image == ""
    assert overrides.full_text == FullText(".body", (".ad",))
    assert overrides.outlet == "B Outlet"


def test_full_text_null_switches_off_a_default_full_text() -> None:
    assert load(DEFAULTS_FILE).feeds[2].full_text is None


def test_enabled_feeds_skips_disabled_ones() -> None:
    config = load(DEFAULTS_FILE)
    assert [f.section for f in config.enabled_feeds()] == ["B"]


# --------------------------------------------------------------------------
# RSSHub routes
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "route", "url"),
    [
        ("https://rsshub.example", "/guancha/headline", "https://rsshub.example/guancha/headline"),
        ("https://rsshub.example/", "/guancha/headline", "https://rsshub.example/guancha/headline"),
        ("https://rsshub.example/", "guancha/headline", "https://rsshub.example/guancha/headline"),
        ("https://rsshub.example", "guancha/headline", "https://rsshub.example/guancha/headline"),
        ("https://h.example/rss/", "/a/b", "https://h.example/rss/a/b"),
        ("https://h.example/rss", "/a/b", "https://h.example/rss/a/b"),
        ("https://h.example", "/a/b?limit=5", "https://h.example/a/b?limit=5"),
        ("https://h.example/?key=s3cret", "/a/b", "https://h.example/a/b?key=s3cret"),
        ("https://h.example/?key=k", "/a/b?limit=5", "https://h.example/a/b?limit=5&key=k"),
        ("http://127.0.0.1:1200", "/guancha/headline", "http://127.0.0.1:1200/guancha/headline"),
    ],
)
def test_rsshub_route_joins_base_with_exactly_one_slash(base: str, route: str, url: str) -> None:
    assert join_rsshub(base, route) == url
    (feed,) = load(
        f"""\
        defaults: {{group: G, rsshub_base: "{base}"}}
        feeds:
          - {{rsshub: "{route}", outlet: O, section: S}}
        """
    ).feeds
    assert feed.url == url
    assert feed.rsshub_route == "/" + route.lstrip("/")


def test_per_feed_rsshub_base_wins_over_the_default() -> None:
    (feed,) = load(
        """\
        defaults: {group: G, rsshub_base: "http://127.0.0.1:1200"}
        feeds:
          - {rsshub: /a, rsshub_base: "https://other.example", outlet: O, section: S}
        """
    ).feeds
    assert feed.url == "https://other.example/a"


def test_rsshub_without_a_base_names_the_route_line() -> None:
    issue = only_issue(
        """\
        defaults: {group: G}
        feeds:
          - outlet: O
            section: S
            rsshub: /guancha/headline
        """
    )
    assert (issue.line, issue.key) == (5, "feeds[0].rsshub")
    assert "rsshub_base" in issue.message


def test_url_and_rsshub_together_are_rejected() -> None:
    issue = only_issue(
        """\
        defaults: {group: G, rsshub_base: "http://127.0.0.1:1200"}
        feeds:
          - url: https://a.example/rss
            rsshub: /a
            outlet: O
            section: S
        """
    )
    assert (issue.line, issue.key) == (4, "feeds[0].rsshub")
    assert "not both" in issue.message


def test_rsshub_route_must_not_be_a_full_url() -> None:
    issue = only_issue(
        """\
        defaults: {group: G, rsshub_base: "http://127.0.0.1:1200"}
        feeds:
          - {rsshub: "https://a.example/x", outlet: O, section: S}
        """
    )
    assert (issue.line, issue.key) == (3, "feeds[0].rsshub")
    assert "url:" in issue.message


def test_url_and_rsshub_cannot_be_defaulted() -> None:
    found = issues(
        """\
        defaults:
          group: G
          url: https://a.example/rss
        feeds: []
        """
    )
    assert [(i.line, i.key) for i in found] == [(3, "defaults.url")]


# --------------------------------------------------------------------------
# Errors name the line and the key
# --------------------------------------------------------------------------

ONE_FEED = """\
defaults:
  group: G
feeds:
  - url: https://a.example/rss
    outlet: O
    section: S
"""


@pytest.mark.parametrize(
    ("edit", "line", "key", "fragment"),
    [
        # (text appended to the one feed, or replacing a line) -> where the error is
        ("    interval: abc\n", 7, "feeds[0].interval", "bad duration 'abc'"),
        ("    interval: 0\n", 7, "feeds[0].interval", "bad duration 0"),
        ("    interval: -5m\n", 7, "feeds[0].interval", "bad duration '-5m'"),
        ("    interval: 1.5.3h\n", 7, "feeds[0].interval", "bad duration '1.5.3h'"),
        ("    interval: 0.5s\n", 7, "feeds[0].interval", "shorter than the 1s minimum"),
        ("    interval: true\n", 7, "feeds[0].interval", "must be a duration"),
        ("    intervall: 5m\n", 7, "feeds[0].intervall", "did you mean 'interval'?"),
        ("    enabled: maybe\n", 7, "feeds[0].enabled", "true or false"),
        ("    section: 2024\n", 6, "feeds[0].section", "put it in quotes"),
        ("    full_text: .body\n", 7, "feeds[0].full_text", "must be a mapping"),
        ("    full_text: {remove: [.ad]}\n", 7, "feeds[0].full_text.selector", "missing"),
        (
            "    full_text:\n      selector: .body\n      remove:\n        - .ad\n        - 3\n",
            11,
            "feeds[0].full_text.remove[1]",
            "must be text",
        ),
        (
            "    full_text: {selector: .body, removes: [.ad]}\n",
            7,
            "feeds[0].full_text.removes",
            "did you mean 'remove'?",
        ),
        ("    placeholder_image:\n", 7, "feeds[0].placeholder_image", "has no value"),
        ("    output_dir: out\n", 7, "feeds[0].output_dir", "top-level setting"),
    ],
)
def test_bad_values_name_their_line_and_key(edit: str, line: int, key: str, fragment: str) -> None:
    lines = ONE_FEED.splitlines(keepends=True)
    edited_key = edit.split(":")[0]
    replaced = [i for i, text in enumerate(lines) if text.split(":")[0] == edited_key]
    if replaced:
        lines[replaced[0]] = edit
    else:
        lines.append(edit)
    issue = only_issue("".join(lines))
    assert (issue.line, issue.key) == (line, key), str(issue)
    assert fragment in issue.message


def test_error_message_format_is_file_line_key_message() -> None:
    with pytest.raises(ConfigError) as caught:
        loads_config(ONE_FEED + "    interval: abc\n", source="feeds.yaml")
    assert caught.value.errors == [
        "feeds.yaml:7: feeds[0].interval: bad duration 'abc' "
        "(use 90s, 15m, 1h or a number of seconds)"
    ]
    assert str(caught.value) == caught.value.errors[0]
    assert isinstance(caught.value, ValueError)


def test_issue_has_the_column_too() -> None:
    issue = only_issue(ONE_FEED + "    interval: abc\n")
    assert issue.column == 5


@pytest.mark.parametrize("missing", ["outlet", "section"])
def test_missing_required_key_points_at_the_feed(missing: str) -> None:
    text = "".join(line for line in ONE_FEED.splitlines(keepends=True) if missing not in line)
    issue = only_issue(text)
    assert (issue.line, issue.key) == (4, f"feeds[0].{missing}")
    assert issue.message.startswith("missing")


def test_missing_url_points_at_the_feed() -> None:
    issue = only_issue(
        """\
        defaults: {group: G}
        feeds:
          - url: https://a.example/rss
            outlet: O
            section: S
          - outlet: O
            section: T
        """
    )
    assert (issue.line, issue.key) == (6, "feeds[1].url")


def test_group_is_required_once_defaults_are_applied() -> None:
    issue = only_issue(
        """\
        feeds:
          - url: https://a.example/rss
            outlet: O
            section: S
        """
    )
    assert (issue.line, issue.key) == (2, "feeds[0].group")
    assert "defaults" in issue.message


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "ftp://a.example/rss",
        "https://",
        "https://a.example:99999/rss",
        "a.example/rss",
    ],
)
def test_urls_must_be_http(url: str) -> None:
    issue = only_issue(ONE_FEED.replace("https://a.example/rss", f'"{url}"'))
    assert (issue.line, issue.key) == (4, "feeds[0].url")


def test_outlet_must_be_a_single_line() -> None:
    issue = only_issue(ONE_FEED.replace("outlet: O", 'outlet: "O\\nP"'))
    assert (issue.line, issue.key) == (5, "feeds[0].outlet")
    assert "control character" in issue.message


@pytest.mark.parametrize(
    ("second_url", "second_line"),
    [
        ("https://a.example/rss", 7),
        ("HTTPS://A.Example/rss", 7),
        ("https://a.example:443/rss", 7),
    ],
)
def test_duplicate_urls_are_rejected_after_normalising(second_url: str, second_line: int) -> None:
    issue = only_issue(ONE_FEED + f"  - url: {second_url}\n    outlet: Again\n    section: S2\n")
    assert (issue.line, issue.key) == (second_line, "feeds[1].url")
    assert "feeds[0] (line 4)" in issue.message


def test_duplicate_detection_sees_through_rsshub_routes() -> None:
    issue = only_issue(
        """\
        defaults: {group: G, rsshub_base: "http://127.0.0.1:1200/"}
        feeds:
          - url: http://127.0.0.1:1200/guancha/headline
            outlet: O
            section: S
          - rsshub: guancha/headline
            outlet: O
            section: S
        """
    )
    assert (issue.line, issue.key) == (6, "feeds[1].rsshub")


def test_path_and_query_case_still_distinguish_feeds() -> None:
    config = load(ONE_FEED + "  - url: https://a.example/RSS\n    outlet: O\n    section: T\n")
    assert len(config.feeds) == 2


def test_every_error_is_reported_at_once() -> None:
    text = """\
        defaults:
          group: G
          colour: red
        feeds:
          - url: https://a.example/rss
            outlet: O
            section: S
            interval: abc
          - url: https://b.example/rss
            section: S
          - url: https://a.example/rss
            outlet: O
            section: S
          - just a string
        extra: 1
        """
    with pytest.raises(ConfigError) as caught:
        loads_config(textwrap.dedent(text))
    located = [(i.line, i.key) for i in caught.value.issues]
    assert located == [
        (3, "defaults.colour"),
        (8, "feeds[0].interval"),
        (9, "feeds[1].outlet"),
        (11, "feeds[2].url"),  # a duplicate of feeds[0], although that one is broken
        (14, "feeds[3]"),
        (15, "extra"),
    ]
    assert str(caught.value).splitlines() == caught.value.errors
    assert len(caught.value.errors) == 6


def test_a_bad_default_is_reported_once_not_per_feed() -> None:
    found = issues(
        """\
        defaults:
          group: [a, list]
        feeds:
          - {url: "https://a.example/rss", outlet: O, section: S}
          - {url: "https://b.example/rss", outlet: O, section: S}
        """
    )
    assert [(i.line, i.key) for i in found] == [(2, "defaults.group")]


# --------------------------------------------------------------------------
# File structure and YAML safety
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("feeds: [\n  - url: x\n", 2, "invalid YAML"),
        ("feeds: []\nfeeds: []\n", 2, "duplicate key"),
        ("defaults:\n  group: G\n group: H\nfeeds: []\n", 3, "invalid YAML"),
    ],
)
def test_yaml_syntax_errors_name_the_line(text: str, line: int, fragment: str) -> None:
    issue = only_issue(text)
    assert issue.line == line
    assert fragment in issue.message


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("", "", "empty"),
        ("# nothing but a comment\n", "", "empty"),
        ("- url: https://a.example/rss\n", "", "must be a mapping"),
        ("just text\n", "", "must be a mapping"),
        ("defaults: {group: G}\n", "feeds", "missing"),
        ("feeds:\n", "feeds", "must be a list"),
        ("feeds: {url: https://a.example/rss}\n", "feeds", "must be a list"),
        ("defaults: [group]\nfeeds: []\n", "defaults", "must be a mapping"),
        ("interval: 5m\nfeeds: []\n", "interval", "under defaults:"),
    ],
)
def test_wrong_file_shapes_are_explained(text: str, key: str, fragment: str) -> None:
    issue = only_issue(text)
    assert issue.key == key
    assert fragment in issue.message


@pytest.mark.parametrize(
    "tagged",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/apply:os.system\n      args: ['touch {marker}']",
        "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
        "!!python/name:os.system",
        "!custom '{marker}'",
    ],
)
def test_unsafe_yaml_tags_are_refused_without_running_anything(tagged: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = ONE_FEED.replace("outlet: O", "outlet: " + tagged.format(marker=marker))
    issue = only_issue(text)
    assert (issue.line, issue.key) == (5, "feeds[0].outlet")
    assert "not allowed" in issue.message
    assert not marker.exists()


def test_explicit_str_tag_is_plain_text() -> None:
    (feed,) = load(ONE_FEED.replace("section: S", "section: !!str 2024")).feeds
    assert feed.section == "2024"


def test_yaml_anchors_and_merge_keys_work() -> None:
    config = load(
        """\
        defaults: {group: G}
        feeds:
          - &common
            url: https://a.example/rss
            outlet: O
            section: S
          - <<: *common
            url: https://b.example/rss
        """
    )
    assert [f.url for f in config.feeds] == ["https://a.example/rss", "https://b.example/rss"]
    assert config.feeds[1].outlet == "O"


def test_billion_laughs_stays_cheap() -> None:
    # Ten levels of ten aliases: 10**9 strings if anything expanded them.
    levels = ['&a0 ["lol"]']
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    text = f"defaults:\n  placeholder_image: [{', '.join(levels)}]\nfeeds: []\n"
    issue = only_issue(text)
    assert (issue.line, issue.key) == (2, "defaults.placeholder_image")
    assert "must be text" in issue.message


def test_absurd_nesting_is_an_error_not_a_crash() -> None:
    depth = 400
    issue = only_issue("feeds: " + "[" * depth + "]" * depth + "\n")
    assert "nested too deeply" in issue.message


# --------------------------------------------------------------------------
# Warnings
# --------------------------------------------------------------------------


def test_interval_under_a_minute_is_accepted_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="aggregator.config.feeds"):
        config = loads_config(ONE_FEED + "    interval: 30s\n")
    assert config.feeds[0].interval == timedelta(seconds=30)
    (warning,) = config.warnings
    assert warning.startswith("feeds.yaml:7: feeds[0].interval: 30s is under a minute")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("aggregator")] == [warning]


def test_a_short_default_interval_warns_once_at_the_default() -> None:
    config = load(
        """\
        defaults: {group: G, interval: 10}
        feeds:
          - {url: "https://a.example/rss", outlet: O, section: S}
          - {url: "https://b.example/rss", outlet: O, section: S}
        """
    )
    assert len(config.warnings) == 1
    assert config.warnings[0].startswith("feeds.yaml:1: defaults.interval: 10s")


# --------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("1.5h", timedelta(minutes=90)),
        ("0.5s", timedelta(milliseconds=500)),
        ("90", timedelta(seconds=90)),
        (" 15m ", timedelta(minutes=15)),
        (90, timedelta(seconds=90)),
        (2.5, timedelta(seconds=2.5)),
    ],
)
def test_parse_duration_accepts(text: str | int | float, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["abc", "0", "0s", "-5m", "1.5.3h", "", "m", "30m1h", "1h1h", "15M", "1w", "1h30", "nan"],
)
def test_parse_duration_rejects_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"bad duration .*90s, 15m, 1h or a number of seconds"):
        parse_duration(text)


@pytest.mark.parametrize("number", [0, -1, -0.5, float("inf"), float("nan"), True, 10**400])
def test_parse_duration_rejects_non_positive_and_odd_numbers(number: float) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(number)


@pytest.mark.parametrize("text", ["99999999999d", "1" * 400 + "s"])
def test_parse_duration_rejects_absurdly_long_durations(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from("smh"))
def test_parse_duration_round_trips_single_units(count: int, unit: str) -> None:
    size = {"s": 1, "m": 60, "h": 3600}[unit]
    assert parse_duration(f"{count}{unit}") == timedelta(seconds=count * size)


@given(st.integers(min_value=1, max_value=10**9))
def test_format_duration_round_trips(seconds: int) -> None:
    duration = timedelta(seconds=seconds)
    assert parse_duration(format_duration(duration)) == duration


def test_format_duration_reads_naturally() -> None:
    assert format_duration(timedelta(minutes=90)) == "1h30m"
    assert format_duration(timedelta(seconds=30)) == "30s"
    assert format_duration(timedelta(milliseconds=500)) == "0.5s"


# --------------------------------------------------------------------------
# Identity and selection
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("HTTPS://Chinese.AlJazeera.net/feed", "https://chinese.aljazeera.net/feed"),
        ("https://a.example:443/rss", "https://a.example/rss"),
        ("http://a.example:80/rss", "http://a.example/rss"),
        ("http://a.example:8080/rss", "http://a.example:8080/rss"),
        ("https://a.example", "https://a.example/"),
        ("https://a.example/RSS?Q=1#top", "https://a.example/RSS?Q=1"),
    ],
)
def test_feed_key_is_the_normalised_url(url: str, key: str) -> None:
    assert normalise_url(url) == key
    assert FeedSpec(url=url, outlet="O", section="S", group="G").key == key


SELECT_FILE = """\
defaults: {group: G, rsshub_base: "http://127.0.0.1:1200"}
feeds:
  - {url: "https://chinese.aljazeera.net/feed", outlet: Aljazeera 半岛网, section: 新闻}
  - {rsshub: /guancha/headline, outlet: 观察者网, section: 头条}
  - {rsshub: /guancha/military, outlet: 观察者网, section: 军事, enabled: false}
"""


@pytest.mark.parametrize(
    ("needle", "sections"),
    [
        ("https://chinese.aljazeera.net/feed", ["新闻"]),
        ("HTTPS://Chinese.Aljazeera.net/feed", ["新闻"]),
        ("http://127.0.0.1:1200/guancha/headline", ["头条"]),
        ("/guancha/headline", ["头条"]),
        ("Aljazeera 半岛网", ["新闻"]),
        ("aljazeera 半岛网", ["新闻"]),
        ("观察者网", ["头条", "军事"]),
    ],
)
def test_select_by_url_route_or_outlet(needle: str, sections: list[str]) -> None:
    config = loads_config(SELECT_FILE)
    assert [feed.section for feed in config.select(needle)] == sections


def test_select_without_a_match_lists_the_outlets() -> None:
    config = loads_config(SELECT_FILE)
    with pytest.raises(ConfigError, match=r"no feed .*'nope'.*Aljazeera 半岛网, 观察者网"):
        config.select("nope")


# --------------------------------------------------------------------------
# Files and reloading
# --------------------------------------------------------------------------


def test_missing_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    with pytest.raises(ConfigError, match="file not found") as caught:
        load_config(path)
    assert caught.value.errors[0].startswith(str(path))


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_bytes(b"feeds: []\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"feeds.yaml:2: .*UTF-8"):
        load_config(path)


def test_relative_output_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "feeds.yaml"
    path.parent.mkdir()
    path.write_text("output_dir: export\nfeeds: []\n", encoding="utf-8")
    assert load_config(path).output_dir == tmp_path / "conf" / "export"
    assert loads_config("output_dir: export\nfeeds: []\n").output_dir == Path("export")
    assert loads_config("output_dir: /srv/blog\nfeeds: []\n").output_dir == Path("/srv/blog")


def test_output_dir_with_tilde_is_refused_rather_than_misread() -> None:
    issue = only_issue("output_dir: ~/blog\nfeeds: []\n")
    assert (issue.line, issue.key) == (1, "output_dir")


def test_loading_is_pure_so_reloads_compare_by_behaviour() -> None:
    first = loads_config(SELECT_FILE)
    assert loads_config(SELECT_FILE) == first
    # Moving feeds down the file changes their lines but not what they do.
    moved = loads_config(SELECT_FILE.replace("feeds:\n", "\n\nfeeds:\n"))
    assert moved == first
    assert moved.feeds[0].line == first.feeds[0].line + 2
    changed = loads_config(SELECT_FILE.replace("section: 头条", "section: 要闻"))
    assert changed != first


def test_a_failed_reload_leaves_the_old_config_usable() -> None:
    current = loads_config(SELECT_FILE)
    with pytest.raises(ConfigError):
        loads_config(SELECT_FILE + "  - nonsense\n")
    assert len(current.feeds) == 3


def test_the_documented_feed_keys_are_the_schema() -> None:
    """docs/configuration.md's table is built from the schema: types, defaults, meanings."""
    docs = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    table = feeds_module.feed_keys_table()
    assert table in docs, (
        "docs/configuration.md's feed-key table differs from the schema; replace it with:\n" + table
    )


def test_every_feed_setting_is_a_documented_key_with_one_default() -> None:
    settings = {f.name for f in dataclasses.fields(FeedSpec)} - {"rsshub_route", "line", "filters"}
    keys = set(feeds_module._FEED_KEYS)
    assert settings <= keys
    # The loader passes nothing it does not read from the file, so a feed that
    # sets nothing gets exactly FeedSpec's defaults.
    (feed,) = loads_config(
        "feeds:\n  - {url: https://example.com/f.xml, outlet: O, section: S, group: G}\n"
    ).feeds
    assert feed == FeedSpec(url="https://example.com/f.xml", outlet="O", section="S", group="G")


def _documented_feed_defaults() -> dict[str, str]:
    """Key -> Default cell of docs/configuration.md's feed-key table, read from the file."""
    docs = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    first = feeds_module.feed_keys_table().splitlines()[2].split(" | ")[0]  # "| `url`"
    rows = (first + docs.split("\n" + first, 1)[1]).split("\n\n", 1)[0].splitlines()
    cells = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]
    return {key.strip("`"): default for key, _kind, default, *_ in cells}


def test_the_documented_defaults_are_what_a_feed_that_sets_nothing_gets() -> None:
    """The docs' Default column against the loader's output, not against the table code.

    A FeedSpec default (or a DEFAULT_* constant) that changes without
    docs/configuration.md being regenerated fails here, whatever
    feed_keys_table does.
    """
    (feed,) = loads_config(
        "feeds:\n  - {url: https://example.com/f.xml, outlet: O, section: S, group: G}\n"
    ).feeds
    names = tuple(f.name for f in dataclasses.fields(FeedSpec))
    written = feeds_module.feed_settings(feed, always=names)
    documented = _documented_feed_defaults()
    assert set(documented) == set(feeds_module._FEED_KEYS)
    checked = set()
    for key, cell in documented.items():
        if key in ("keep", "block"):
            value: object = written.get(key, [])
        elif key in written:
            value = written[key]
        else:
            continue  # no runtime default: the address keys and the names
        expected = "none" if value is None else f"`{feeds_module._yaml_text(value)}`"
        assert cell.split(" (")[0] == expected, key
        checked.add(key)
    no_runtime_default = {"url", "rsshub", "rsshub_base", "outlet", "section", "group"}
    assert checked == set(documented) - no_runtime_default
    assert documented["interval"] == f"`{format_duration(DEFAULT_INTERVAL)}`"


def test_a_changed_feedspec_default_changes_the_generated_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The table reads FeedSpec's defaults: changing one (here through the field
    the dataclass keeps) changes the row, so the docs comparison above fails."""
    docs = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    spec_fields = {f.name: f for f in dataclasses.fields(FeedSpec)}
    monkeypatch.setattr(spec_fields["disable_after"], "default", timedelta(days=3, hours=12))
    monkeypatch.setattr(spec_fields["max_image_bytes"], "default", 8 * 2**20)
    monkeypatch.setattr(spec_fields["enabled"], "default", False)
    table = feeds_module.feed_keys_table()
    assert table not in docs
    rows = {row.split(" | ")[0]: row.split(" | ")[2] for row in table.splitlines()[2:]}
    assert rows["| `disable_after`"] == "`3d12h`"
    assert rows["| `max_image_bytes`"] == "`8388608` (8 MiB)"
    assert rows["| `enabled`"] == "`false`"


def test_a_written_default_cannot_shadow_a_runtime_one() -> None:
    with pytest.raises(AssertionError, match="FeedSpec has a default"):
        feeds_module._default_text("interval", {"kind": "duration", "default": "`1h`"})
    with pytest.raises(AssertionError, match="no FeedSpec default"):
        feeds_module._default_text("outlet", {"kind": "text"})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (16777216, "16777216"),
        ("", '""'),
        ("15m", "15m"),
        ("-8h", "-8h"),
        ("新媒体", "新媒体"),
        ("true", '"true"'),
        ("null", '"null"'),
        ("a: b", '"a: b"'),
        ("#ad", '"#ad"'),
        ("trailing ", '"trailing "'),
        ('say "hi"', '"say \\"hi\\""'),
        ("https://img.example/none.png", '"https://img.example/none.png"'),
        ([], "[]"),
        ((".ad", ".related box"), "[.ad, .related box]"),
        ({}, "{}"),
        ({"n.sinaimg.cn": "none", "x.cn": "origin"}, "{n.sinaimg.cn: none, x.cn: origin}"),
        ({"selector": ".body", "remove": [".ad"]}, "{selector: .body, remove: [.ad]}"),
    ],
)
def test_defaults_are_shown_as_feeds_yaml_writes_them(value: object, text: str) -> None:
    """Each spelling reads back in YAML as the value it shows."""
    from ruamel.yaml import YAML

    assert feeds_module._yaml_text(value) == text
    read = YAML(typ="safe", pure=True).load(f"key: {text}\n")["key"]
    assert read == (list(value) if isinstance(value, tuple) else value)


def test_a_feedspec_default_the_docs_cannot_spell_is_an_error() -> None:
    with pytest.raises(TypeError, match=r"no feeds\.yaml spelling for object"):
        feeds_module._yaml_text(object())
