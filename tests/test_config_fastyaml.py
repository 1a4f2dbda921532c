"""libyaml's reading of feeds.yaml (``aggregator.config.fastyaml``) is ruamel's, or unused.

``loads_config`` reads a file with libyaml when it can prove the reading is
the one ruamel's YAML 1.2 round-trip loader gives, and with ruamel
otherwise.  Here both are run on every feeds file the tests and the
repository hold (every string literal of the tests that has a ``feeds:``
key, and every ``*.yaml`` file) and on generated ones, and must give the
same :class:`Config` -- feed lines included, which equality leaves out --
or the same errors.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from aggregator.config import feeds as feeds_module
from aggregator.config.fastyaml import UNSURE, Parsed, plain_yaml
from aggregator.config.feeds import Config, ConfigError

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(
        not yaml.__with_libyaml__, reason="PyYAML without libyaml: the fast path is never taken"
    ),
    # generated files reuse anchor names; ruamel warns, and reads them all the same
    pytest.mark.filterwarnings("ignore::ruamel.yaml.error.ReusedAnchorWarning"),
]


def _fixture_texts() -> list[tuple[str, str]]:
    """(where, text) of every feeds file the tests and the repository hold."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and "feeds:" in str(node.value):
                for text in (str(node.value), textwrap.dedent(str(node.value))):
                    found.setdefault(text, f"{path.name}:{node.lineno}")
    files = [
        *ROOT.glob("*.yaml"),
        *(ROOT / "tests").rglob("*.y*ml"),
        *(ROOT / "seeds").rglob("*.y*ml"),
    ]
    for path in sorted(files):
        found.setdefault(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    return [(where, text) for text, where in found.items()]


FIXTURES = _fixture_texts()


def _ruamel_config(text: str) -> Config | list[str]:
    try:
        return feeds_module._Loader("feeds.yaml").load(text, None)
    except ConfigError as exc:
        return [str(issue) for issue in exc.errors]


def _loaded(text: str) -> Config | list[str]:
    try:
        return feeds_module.loads_config(text, source="feeds.yaml")
    except ConfigError as exc:
        return [str(issue) for issue in exc.errors]


def _ruamel_plain(text: str) -> Any:
    loader = feeds_module._Loader("feeds.yaml")
    return loader._plain(YAML(typ="rt").load(text), (), {})


def _feed_lines(config: Config | list[str]) -> list[int] | None:
    return [spec.line for spec in config.feeds] if isinstance(config, Config) else None


def assert_same(text: str) -> object:
    """Both readings agree; returns what libyaml gave (UNSURE or Parsed)."""
    expected, got = _ruamel_config(text), _loaded(text)
    assert got == expected
    assert _feed_lines(got) == _feed_lines(expected)
    if isinstance(got, Config):
        assert got.warnings == expected.warnings
    parsed = plain_yaml(text)
    if isinstance(parsed, Parsed):
        # Taken: the plain data is ruamel's to the type (True is not 1, "1" not 1).
        plain = _ruamel_plain(text)
        assert repr(parsed.data) == repr(plain)
    return parsed


def test_the_fixtures_are_found() -> None:
    assert len(FIXTURES) > 50
    assert any(where == "feeds.yaml" for where, _ in FIXTURES)


@pytest.mark.parametrize(("where", "text"), FIXTURES, ids=[w for w, _ in FIXTURES])
def test_every_fixture_reads_the_same(where: str, text: str) -> None:
    assert_same(text)


def test_the_shipped_feeds_file_takes_the_fast_path() -> None:
    text = (ROOT / "feeds.yaml").read_text(encoding="utf-8")
    assert isinstance(plain_yaml(text), Parsed)


FEED = "feeds:\n  - url: https://example.com/feed\n    outlet: o\n    section: s\n"


@pytest.mark.parametrize(
    "value",
    ["on", "off", "yes", "no", "y", "n", "Yes", "NO", "On", "OFF"],
)
def test_yaml_11_booleans_stay_text(value: str) -> None:
    text = FEED + f"    group: {value}\n"
    assert isinstance(assert_same(text), Parsed)
    config = _loaded(text)
    assert isinstance(config, Config)
    assert config.feeds[0].group == value


@pytest.mark.parametrize(
    "value",
    [
        "010",
        "0o17",
        "0x1F",
        "1_000",
        "1e3",
        "1.5",
        ".5",
        ".inf",
        "-.inf",
        ".nan",
        "1:20",
        "2024-03-01",
        "2024-3-1T10:00:00",
        "2024-13-45",
        "=",
        "12:30",
    ],
)
def test_numbers_and_dates_go_to_ruamel(value: str) -> None:
    text = FEED + f"    group: {value}\n"
    assert assert_same(text) is UNSURE


@pytest.mark.parametrize(
    "text",
    [
        FEED + "    outlet: again\n",  # a duplicate key
        FEED + "    group: !!str 5\n",  # a tag
        FEED + "    group: !!python/object:os.system x\n",
        "defaults: &d {group: g}\n" + FEED + "    <<: *d\n",  # anchors, aliases, merges
        FEED + '    group: "a\\tb"\n',  # escapes
        FEED + "    group: |\n      block\n",
        FEED + "    group: a\n      b\n",  # folded over two lines
        "%YAML 1.1\n---\n" + FEED,
        FEED + "---\n" + FEED,
        FEED + "    group: a\u2028b\n",
        "\ufeff" + FEED,
        FEED + "    1: x\n",
        FEED + "    true: x\n",
        FEED + "    ? [a]\n    : x\n",
    ],
)
def test_what_only_ruamel_decides_goes_to_ruamel(text: str) -> None:
    assert assert_same(text) is UNSURE


@pytest.mark.parametrize(
    "text",
    [
        FEED + "    interval: 30s\n",  # a warning (under a minute): lines come from ruamel
        FEED + "    interval: abc\n",  # an error
        FEED + "  - url: https://example.com/feed\n    outlet: o\n    section: s\n",  # duplicate
        "feeds: []\n",
        "",
        "# only a comment\n",
        "feeds:\n",
        "- a\n- b\n",
        "feeds: [\n",
    ],
)
def test_files_with_something_to_say_read_the_same(text: str) -> None:
    assert_same(text)


# -- generated files -----------------------------------------------------------

_SCALARS = st.sampled_from(
    [
        "x",
        "新闻",
        "Aljazeera 半岛网",
        "on",
        "yes",
        "no",
        "off",
        "true",
        "False",
        "null",
        "~",
        "",
        "0",
        "7",
        "-3",
        "+4",
        "010",
        "1e3",
        "1.5",
        "15m",
        "2h",
        "90s",
        "1:20",
        "2024-03-01",
        "a: b",
        "a #b",
        "a# b",
        "#x",
        "@x",
        "`x",
        "%x",
        "!x",
        "&x",
        "*x",
        "'q'",
        '"q"',
        '"a\\"b"',
        "'it''s'",
        "{a: 1}",
        "[a, b]",
        "- x",
        "? x",
        "https://e.com/f?a=1&b=2",
        "http://127.0.0.1:8080/feed.xml",
        ".ad",
        "#main .article",
        "a\tb",
        "tab\t",
        " lead",
        "trail ",
        "<<",
        "=",
        ".inf",
        "0x1F",
        "0o7",
        "1_000",
        "Yes",
        "ON",
        "y",
        "n",
    ]
)
_KEYS = st.sampled_from(
    [
        "url",
        "outlet",
        "section",
        "group",
        "interval",
        "enabled",
        "identity",
        "rsshub",
        "full_text",
        "keep",
        "block",
        "max_image_bytes",
        "unknown",
        "url",
    ]
)


def _render(value: Any, indent: int, flow: bool) -> str:
    pad = " " * indent
    if isinstance(value, dict):
        if flow or not value:
            return "{" + ", ".join(f"{k}: {_render(v, 0, True)}" for k, v in value.items()) + "}"
        return "\n" + "".join(
            f"{pad}{k}: {_render(v, indent + 2, False)}\n" for k, v in value.items()
        ).rstrip("\n")
    if isinstance(value, list):
        if flow or not value:
            return "[" + ", ".join(_render(v, 0, True) for v in value) + "]"
        return "\n" + "".join(
            f"{pad}- {_render(v, indent + 2, False).lstrip()}\n" for v in value
        ).rstrip("\n")
    return str(value)


_FEEDS = st.lists(
    st.dictionaries(
        _KEYS,
        st.one_of(
            _SCALARS, st.lists(_SCALARS, max_size=3), st.dictionaries(_KEYS, _SCALARS, max_size=2)
        ),
        min_size=1,
        max_size=5,
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    feeds=_FEEDS,
    defaults=st.dictionaries(_KEYS, _SCALARS, max_size=3),
    flow=st.booleans(),
    crlf=st.booleans(),
    comment=st.booleans(),
)
def test_generated_files_read_the_same(
    feeds: list[dict[str, Any]], defaults: dict[str, Any], flow: bool, crlf: bool, comment: bool
) -> None:
    lines = []
    if defaults:
        lines.append("defaults: " + _render(defaults, 2, flow))
    lines.append("feeds:" + (" " + _render(feeds, 0, True) if flow else _render(feeds, 2, False)))
    text = "\n".join(lines) + "\n"
    if comment:
        text = "# feeds\n" + text.replace("\n", "  # c\n", 1)
    if crlf:
        text = text.replace("\n", "\r\n")
    assert_same(text)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "url": st.sampled_from(
                    ["https://a.com/f", "http://b.cn/rss", "https://c.org/x?y=1"]
                ),
                "outlet": _SCALARS,
                "section": _SCALARS,
            },
            optional={"group": _SCALARS, "enabled": _SCALARS, "interval": _SCALARS},
        ),
        min_size=1,
        max_size=6,
    )
)
def test_generated_valid_feed_lists_read_the_same(feeds: list[dict[str, Any]]) -> None:
    text = "defaults: {group: g, interval: 15m}\nfeeds:" + _render(feeds, 2, False) + "\n"
    assert_same(text)
