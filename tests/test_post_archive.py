"""Files the original generator wrote: every variant reads right and comes back byte for byte.

The synthetic files below are written per variant (our own text, not the
publishers'), so the grammar is tested without the shared archive; the real
files in ``archive-real`` are checked as well when that folder is present.
PyYAML and ``email.utils`` are the independent readers the hand-written
grammar is compared with.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from paths import ARCHIVE_REAL

from aggregator.hexo.post import INVALID_DATE, Layout, Post, PostFormatError, parse, render

_TAIL = "\n</div>\n            "


def _file(
    *,
    title: str = "title: '测试标题'",
    head: str = "categories: ",
    items: tuple[str, ...] = (" - 新媒体", " - 例子网", " - 新闻"),
    headimg: str | None = "headimg: 'https://example.org/a.jpg'",
    author: str = "author: 例子网",
    date: str = "date: Tue, 01 Mar 2022 13:31:34 GMT",
    thumbnail: str = "thumbnail: 'https://example.org/a.jpg'",
    body: str = "<p>第一段</p>",
    closing: str = "\n  " + _TAIL,
) -> str:
    lines = [title, head, *items, *([headimg] if headimg is not None else [])]
    lines += [author, "comments: false", date, thumbnail]
    return "\n---\n" + "\n".join(lines) + "\n---\n\n<div>   \n" + body + closing


def _front(text: str) -> str:
    """The front matter: from the opening '---' line to the closing one."""
    found = re.match(r"\ufeff?\n?---\n(.*?\n)---\n", text, re.S)
    assert found is not None, text[:80]
    return found.group(1)


def _agrees_with_yaml(text: str, post: Post, timezone: str = "UTC") -> None:
    """What PyYAML (and email.utils for the date) read equals what we read."""
    data = yaml.safe_load(_front(text))
    assert data["title"] == post.title
    assert data["categories"] == list(post.categories[: len(data["categories"])])
    if len(data["categories"]) == 2:
        assert post.section == ""
    assert (data.get("headimg") or "") == post.headimg
    assert (data["thumbnail"] or "") == post.thumbnail
    assert data["author"] == post.author
    assert data["comments"] is post.comments
    date = data["date"]
    if isinstance(date, datetime):  # written without a zone: the archive's zone
        assert date.replace(tzinfo=ZoneInfo(timezone)) == post.date
    elif date == INVALID_DATE:
        assert post.date is None
    else:
        assert parsedate_to_datetime(date) == post.date


@dataclass(frozen=True)
class Variant:
    name: str
    text: str
    expect: dict[str, Any]
    timezone: str = "UTC"


_BODY = "<p>第一段</p>\n\n<p>第二段 {x} \\d+</p>"

VARIANTS = [
    Variant("canonical", _file(), {"title": "测试标题", "layout": None}),
    *(
        Variant(
            f"content and {n} trailing spaces before </div>",
            _file(body=_BODY, closing=" " * n + _TAIL),
            {"body": _BODY},
        )
        for n in (0, 2, 3, 10, 22)
    ),
    *(
        Variant(
            f"whitespace-only last line of {n} spaces",
            _file(body=_BODY, closing="\n" + " " * n + _TAIL),
            {"body": _BODY},
        )
        for n in (0, 2, 8, 10, 38)
    ),
    Variant(
        "local date read as UTC",
        _file(date="date: 2021-11-09 08:09:39"),
        {"date": datetime(2021, 11, 9, 8, 9, 39, tzinfo=UTC)},
    ),
    Variant(
        "local date read in the archive's zone",
        _file(date="date: 2021-11-09 08:09:39"),
        {"date": datetime(2021, 11, 9, 0, 9, 39, tzinfo=UTC)},
        timezone="Asia/Shanghai",
    ),
    Variant("Invalid Date", _file(date="date: Invalid Date"), {"date": None}),
    Variant(
        "older generator",
        _file(
            title="title: Release 1.2_ notes",
            items=("    - 编程", "    - 例子 - 博客"),
            headimg=None,
            author="author: 例子 - 博客",
            thumbnail="thumbnail: ",
            body="<pre>if (a) { b(); }</pre>\n\n<p>😀</p>",
        ),
        {
            "title": "Release 1.2_ notes",
            "categories": ("编程", "例子 - 博客", ""),
            "headimg": "",
            "thumbnail": "",
            "body": "<pre>if (a) { b(); }</pre>\n\n<p>😀</p>",
        },
    ),
    Variant(
        "older generator, title continued on the next line",
        _file(
            title="title: Re_ _PATCH 1_2_ a rather long first part\n of the title",
            items=("    - 编程", "    - 例子"),
            headimg=None,
            author="author: 例子",
            thumbnail="thumbnail: ",
            closing="  " + _TAIL,
        ),
        {"title": "Re_ _PATCH 1_2_ a rather long first part of the title"},
    ),
    Variant(
        "body with U+3000, U+00A0, emoji, backslashes, blank lines, escaped braces",
        _file(body="<p>\u3000\u3000段落\xa0A</p>\n\n\n<p>🚀 C:\\dir\\ &#123;&#125;</p>"),
        {"body": "<p>\u3000\u3000段落\xa0A</p>\n\n\n<p>🚀 C:\\dir\\ &#123;&#125;</p>"},
    ),
    Variant(
        "titles with _, double spaces and ...",
        _file(title="title: 'a_b  - 两个空格的标题...'"),
        {"title": "a_b  - 两个空格的标题...", "layout": None},
    ),
    Variant(
        "categories with spaces, section starting with '— ', empty images",
        _file(
            items=(" - 编程", " - IT 之家", " - — 分类"),
            headimg="headimg: ''",
            thumbnail="thumbnail: ''",
        ),
        {"categories": ("编程", "IT 之家", "— 分类"), "headimg": "", "layout": None},
    ),
    Variant(
        "double-quoted value with escapes",
        _file(title='title: "a\\u2028b \\"c\\" \\\\"'),
        {"title": 'a\u2028b "c" \\', "layout": None},
    ),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_each_variant_is_read_right_and_written_back_byte_for_byte(variant: Variant) -> None:
    post = parse(variant.text, timezone=variant.timezone)
    for name, value in variant.expect.items():
        assert getattr(post, name) == value, name
    assert render(post) == variant.text
    _agrees_with_yaml(variant.text, post, variant.timezone)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_a_layout_survives_the_database(variant: Variant) -> None:
    post = parse(variant.text, timezone=variant.timezone)
    if post.layout is None:
        return
    stored = json.loads(json.dumps(post.layout.as_dict()))
    again = replace(post, layout=Layout.from_dict(stored))
    assert again.layout == post.layout
    assert render(again) == variant.text


def test_a_fetched_post_has_no_layout_and_a_replayed_one_equals_it() -> None:
    older = parse(VARIANTS[-5].text)
    fetched = replace(older, layout=None)
    assert older == fetched  # layout is presentation, not data
    assert render(fetched) != render(older)
    assert parse(render(fetched)).layout is None


def test_an_edited_field_comes_out_canonical_and_the_rest_as_written() -> None:
    text = next(v.text for v in VARIANTS if v.name.endswith("next line"))
    post = parse(text)
    edited = render(replace(post, title="Re: [PATCH] new: title", section="补丁"))
    assert "\ntitle: 'Re: [PATCH] new: title'\n" in edited
    assert "\n    - 编程\n    - 例子\n    - 补丁\nauthor: 例子\n" in edited  # indent kept
    assert "headimg" not in edited and "\nthumbnail: \n" in edited
    assert edited.endswith("  " + _TAIL)
    again = parse(edited)
    assert (again.title, again.section) == ("Re: [PATCH] new: title", "补丁")
    with_image = render(replace(post, headimg="https://example.org/i.png"))
    assert "\n    - 例子\nheadimg: 'https://example.org/i.png'\nauthor: " in with_image
    assert parse(with_image).headimg == "https://example.org/i.png"


def test_a_changed_date_replaces_the_local_time_text() -> None:
    post = parse(_file(date="date: 2021-11-09 08:09:39"), timezone="Asia/Shanghai")
    same = render(post)
    assert "\ndate: 2021-11-09 08:09:39\n" in same
    moved = render(replace(post, date=datetime(2022, 1, 1, tzinfo=UTC)))
    assert "\ndate: Sat, 01 Jan 2022 00:00:00 GMT\n" in moved


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("no front matter at all", 1, "'---'"),
        (_file(items=(" - 编程",)), 6, "three '- ' items"),
        (_file(items=(" - a", "   - b", " - c")), 6, "indented alike"),
        (_file(title="title: Live: updates"), 3, "YAML would not read"),
        (_file(title="title: [Live] updates"), 3, "YAML would not read"),
        (_file(title="title: a #hashtag"), 3, "YAML would not read"),
        (_file(title="title:'x'"), 3, "space before the value"),
        (_file(title="title: 'quoted'\n continued"), 4, "expected 'key: value'"),
        (_file(title='title: "unterminated'), 3, "double-quoted"),
        (_file(title='title: "bad \\q escape"'), 3, "unknown escape"),
        (_file(date="date: 2021-11-09"), 11, "RFC 822"),
        (_file(date="date: 2021-02-30 08:00:00"), 11, "not a real date"),
        (_file(closing="\n  \n</section>\n"), 19, "'</div>'"),
        (_file(closing="\n  \n</div>\n\n\n"), 21, "'</div>'"),
    ],
)
def test_a_file_in_none_of_these_shapes_is_refused_naming_file_and_line(
    text: str, line: int, fragment: str
) -> None:
    with pytest.raises(PostFormatError) as caught:
        parse(text, source="x.md")
    assert caught.value.line == line
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"x.md:{line}: ")


@pytest.mark.parametrize(
    ("slot", "text"),
    [("title", " x\n---"), ("categories.0", " a\n b"), ("date", " 2021-11-09 08:09:39\nx: y")],
)
def test_a_stored_spelling_that_would_break_the_file_is_not_used(slot: str, text: str) -> None:
    post = parse(_file())
    value = {"title": post.title, "categories.0": post.group, "date": post.date}[slot]
    tampered = replace(post, layout=Layout(written=((slot, text),)))
    assert render(tampered) == render(post)  # canonical, not the tampered text
    assert parse(render(tampered)) == post
    assert value is not None


def test_an_unknown_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        parse(_file(), timezone="Mars/Olympus")


@pytest.mark.parametrize(
    "data",
    [
        {"closing": "<p>not a closing</p>"},
        {"items": 4},
        {"bogus": 1},
        {"keys": ["layout"]},
        {"keys": ["categories", "author", "comments", "date", "thumbnail"]},
        {"keys": ["title", "title", "categories", "author", "comments", "date", "thumbnail"]},
        {"timezone": "Nowhere/Special"},
    ],
)
def test_a_stored_layout_that_is_not_one_the_format_allows_is_refused(
    data: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match="Layout"):
        Layout.from_dict(data)


# -- values YAML readers disagree on ---------------------------------------

_breaking = st.text(st.sampled_from("a '\"\\:#-\x85\u2028\u2029\u00a0中"), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(title=_breaking, outlet=_breaking, author=_breaking)
def test_line_separators_force_double_quotes_that_every_reader_agrees_on(
    title: str, outlet: str, author: str
) -> None:
    post = Post(title=title, group="g", outlet=outlet, section="s", body="", author=author)
    text = render(post)
    data = yaml.safe_load(_front(text))
    assert (data["title"], data["categories"][1], data["author"]) == (title, outlet, author)
    assert parse(text) == post
    assert render(parse(text)) == text
    for line in _front(text).splitlines():
        if re.search("[\x85\u2028\u2029]", line):
            pytest.fail(f"a raw line separator was written: {line!r}")


@pytest.mark.parametrize(
    "escaped",
    [
        "\\0",
        "\\a",
        "\\t",
        "\\n",
        "\\e",
        "\\N",
        "\\_",
        "\\L",
        "\\P",
        "\\/",
        "\\x41",
        "\\u00e9",
        "\\U0001F600",
        "\\\\",
        '\\"',
        "\\ ",
    ],
)
def test_double_quoted_escapes_read_as_pyyaml_reads_them(escaped: str) -> None:
    value = f'"x{escaped}y"'
    expected = yaml.safe_load(f"title: {value}")["title"]
    text = _file(title=f"title: {value}")
    if re.search("[\x00-\x08\x0a-\x1f]", expected):
        with pytest.raises(PostFormatError, match="control character"):
            parse(text)
        return
    assert parse(text).title == expected
    assert render(parse(text)) == text


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        st.characters(
            blacklist_categories=("Cc", "Cs"),
            blacklist_characters="\ufeff\ufffe\uffff\x85\u2028\u2029",
        ),
        max_size=30,
    )
)
def test_double_quoted_values_read_as_pyyaml_reads_them(value: str) -> None:
    quoted = json.dumps(value, ensure_ascii=False)
    text = _file(title=f"title: {quoted}")
    assert parse(text).title == yaml.safe_load(f"title: {quoted}")["title"] == value
    assert render(parse(text)) == text


# -- the real archive --------------------------------------------------------


def _index() -> list[dict[str, str]]:
    with (ARCHIVE_REAL / "INDEX.tsv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


_ROWS = _index() if (ARCHIVE_REAL / "INDEX.tsv").is_file() else []


def _needs_archive() -> None:
    if not _ROWS:
        pytest.skip(f"the generator's real files are not at {ARCHIVE_REAL}")


def _notes_hold(notes: str, post: Post) -> None:
    """INDEX.tsv's description of a file, checked against what we read."""
    layout = post.layout or Layout()
    ends = re.search(r"content\+'( *)' before </div>", notes)
    if ends:
        assert layout.closing == ends.group(1) + _TAIL
        assert post.body == post.body.rstrip(" ")
    blank = re.search(r"whitespace-only\((\d+) sp\)", notes)
    if blank:
        assert layout.closing == "\n" + " " * int(blank.group(1)) + _TAIL
    checks = {
        "date=Invalid Date": post.date is None,
        "ISO-like date": (layout.spelled("date") or "").strip()[:2] == "20",
        "v1-variant": layout.items == 2 and "headimg" not in layout.keys,
        "multi-line title": "\n" in (layout.spelled("title") or ""),
        "empty headimg/thumbnail ''": post.headimg == post.thumbnail == "",
        "section starts with '— '": post.section.startswith("— "),
        "category with space": any(" " in c for c in post.categories),
        "title has double space": "  " in post.title,
        "title truncated with ...": "..." in post.title,
        "title has _": "_" in post.title,
        "picsum headimg": "picsum.photos" in post.headimg,
        "U+3000": "\u3000" in post.body,
        "U+00A0": "\xa0" in post.body,
        "astral chars": any(ord(c) > 0xFFFF for c in post.body),
        "backslashes": "\\" in post.body,
        "blank lines in body": "\n\n" in post.body,
        "&#123;/&#125;": "&#123;" in post.body or "&#125;" in post.body,
        "raw { }": "{" in post.body and "}" in post.body,
    }
    for note, holds in checks.items():
        if note in notes:
            assert holds, note


@pytest.mark.parametrize("row", _ROWS or [{"file": "(absent)"}], ids=lambda r: r["file"])
def test_every_archive_file_is_read_right_and_written_back_byte_for_byte(
    row: dict[str, str],
) -> None:
    _needs_archive()
    path = ARCHIVE_REAL / row["file"]
    text = path.read_bytes().decode("utf-8")
    post = parse(text, source=str(path))
    assert render(post) == text
    _agrees_with_yaml(text, post)
    assert f"\n{row['outlet']}\n" in text and f"\n{row['date']}\n" in text
    assert post.author == row["outlet"].removeprefix("author: ")
    _notes_hold(row["notes"], post)
    stored = (
        Layout.from_dict(json.loads(json.dumps(post.layout.as_dict()))) if post.layout else None
    )
    assert render(replace(post, layout=stored)) == text


def test_the_archive_index_names_every_file() -> None:
    _needs_archive()
    assert sorted(r["file"] for r in _ROWS) == sorted(p.name for p in ARCHIVE_REAL.glob("*.md"))


def test_archive_dates_without_a_zone_follow_the_timezone() -> None:
    _needs_archive()
    row = next(r for r in _ROWS if "ISO-like date" in r["notes"])
    text = (ARCHIVE_REAL / row["file"]).read_text(encoding="utf-8")
    utc = parse(text)
    local = parse(text, timezone="Asia/Shanghai")
    assert utc.date is not None and local.date is not None
    assert (utc.date - local.date).total_seconds() == 8 * 3600
    assert render(local) == render(utc) == text


# -- any file in the grammar comes back as written ---------------------------

_plain_text = st.text(st.sampled_from("ab中 _.-()…"), min_size=1, max_size=12).filter(
    lambda t: t.strip() == t and not t.startswith("-")
)
_body_text = st.text(st.sampled_from("a<>/p\n \u3000\xa0😀\\{}&#;'\"-"), max_size=40)


@st.composite
def _generator_files(draw: st.DrawFn) -> str:
    """Files in any mix of the variants (not only the combinations seen)."""
    title = draw(_plain_text)
    title_line = draw(
        st.sampled_from(
            [
                f"title: '{title}'",
                f"title: {title}",
                f"title: {title}\n {title}",
                f'title: "{title}"',
                f"title:  '{title}'  ",
            ]
        )
    )
    indent = draw(st.sampled_from(["", " ", "  ", "    "]))
    count = draw(st.sampled_from([2, 3]))
    items = tuple(f"{indent}- {draw(_plain_text)}" for _ in range(count))
    return _file(
        title=title_line,
        head=draw(st.sampled_from(["categories: ", "categories:"])),
        items=items,
        headimg=draw(st.sampled_from([None, "headimg: ''", "headimg: 'https://e.org/i.png'"])),
        date=draw(
            st.sampled_from(
                [
                    "date: Tue, 01 Mar 2022 13:31:34 GMT",
                    "date: 2021-11-09 08:09:39",
                    "date: Invalid Date",
                ]
            )
        ),
        thumbnail=draw(st.sampled_from(["thumbnail: ", "thumbnail:", "thumbnail: ''"])),
        body=draw(_body_text),
        closing=draw(st.sampled_from(["", "\n"])) + " " * draw(st.integers(0, 40)) + _TAIL,
    )


@settings(max_examples=400, deadline=None)
@given(_generator_files(), st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York"]))
def test_every_file_the_grammar_accepts_comes_back_as_written(text: str, tz: str) -> None:
    post = parse(text, timezone=tz)
    assert render(post) == text
    _agrees_with_yaml(text, post, tz)
    assert parse(render(replace(post, layout=None))) == post
    # The flat canonical path and the layout path with every default agree.
    assert render(replace(post, layout=Layout())) == render(replace(post, layout=None))
