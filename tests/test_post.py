"""The seed format: render(parse(text)) == text, byte for byte."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from paths import SEEDS

from aggregator.hexo.post import (
    INVALID_DATE,
    Post,
    PostFormatError,
    format_date,
    parse,
    parse_date,
    render,
)


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def _seed(name_prefix: str = "000") -> str:
    return _read(next(SEEDS.glob(f"{name_prefix}_*.txt")))


def _replace_line(text: str, prefix: str, new_line: str) -> str:
    lines = text.split("\n")
    index = next(i for i, line in enumerate(lines) if line.startswith(prefix))
    lines[index] = new_line
    return "\n".join(lines)


@pytest.mark.parametrize("path", sorted(SEEDS.glob("*.txt")), ids=lambda p: p.name)
def test_every_seed_round_trips_byte_for_byte(path: Path) -> None:
    text = _read(path)
    assert render(parse(text)) == text


def test_seed_fields_are_read_as_the_archive_means_them() -> None:
    post = parse(_seed("002"))
    assert post.categories == ("新媒体", "观察者网", "头条")
    assert post.author == "观察者网"
    assert post.comments is False
    assert post.date == datetime(2022, 3, 1, 8, 20, 30, tzinfo=UTC)
    assert (
        post.headimg
        == post.thumbnail
        == "https://i.guancha.cn/news/2022/03/01/20220301101418121.jpg"
    )
    assert post.body.startswith('<img src="https://i.guancha.cn/')
    assert post.body.endswith("</p>")


def test_layout_details_are_exact() -> None:
    text = render(parse(_seed()))
    assert text.startswith("\n---\ntitle: '")
    assert "\ncategories: \n - " in text
    assert "\n---\n\n<div>   \n" in text
    assert text.endswith("\n  \n</div>\n            ")


@pytest.mark.parametrize(
    ("title", "line"),
    [
        ("Biden's speech", "title: 'Biden''s speech'"),
        ("Ukraine: talks resume", "title: 'Ukraine: talks resume'"),
        ("Issue #5 # comment", "title: 'Issue #5 # comment'"),
        ("[Live] updates", "title: '[Live] updates'"),
        ("{breaking} news", "title: '{breaking} news'"),
        ("''", "title: ''''''"),
    ],
)
def test_awkward_titles_round_trip(title: str, line: str) -> None:
    text = _replace_line(_seed(), "title: ", line)
    post = parse(text)
    assert post.title == title
    assert render(post) == text
    assert yaml.safe_load(text.split("---")[1])["title"] == title


def test_empty_image_round_trips() -> None:
    text = _replace_line(
        _replace_line(_seed(), "headimg: ", "headimg: ''"), "thumbnail: ", "thumbnail: ''"
    )
    post = parse(text)
    assert post.headimg == post.thumbnail == ""
    assert render(post) == text


def test_invalid_date_is_accepted_and_kept() -> None:
    text = _replace_line(_seed(), "date: ", f"date: {INVALID_DATE}")
    post = parse(text)
    assert post.date is None
    assert render(post) == text


def test_escaped_braces_in_body_are_kept_verbatim() -> None:
    post = parse(_seed())
    text = render(Post(**{**_fields(post), "body": "<p>&#123;&#123; not a tag &#125;&#125;</p>"}))
    assert "&#123;&#123; not a tag &#125;&#125;" in text
    assert render(parse(text)) == text


@pytest.mark.parametrize(
    "body", ["<p>no newline at the end</p>", "<p>ends with one</p>\n", "", "\n\n"]
)
def test_body_ends_round_trip(body: str) -> None:
    post = Post(**{**_fields(parse(_seed())), "body": body})
    text = render(post)
    assert parse(text).body == body
    assert render(parse(text)) == text


def test_body_that_contains_the_closing_marker_is_not_cut_short() -> None:
    body = "<p>a</p>\n  \n</div>\n            <p>b</p>"
    post = Post(**{**_fields(parse(_seed())), "body": body})
    assert parse(render(post)).body == body


def test_whitespace_stripped_by_an_editor_is_still_read() -> None:
    stripped = "\n".join(line.rstrip() for line in _seed().split("\n"))
    post = parse(stripped)
    assert post == parse(_seed())


def _fields(post: Post) -> dict[str, object]:
    return {name: getattr(post, name) for name in Post.__dataclass_fields__}


@pytest.mark.parametrize(
    ("mutation", "line", "fragment"),
    [
        (lambda t: t.replace("\n---\n", "\n", 1), 1, "'---'"),
        (
            lambda t: _replace_line(t, "comments:", "comments: maybe"),
            10,
            "comments must be true or false",
        ),
        (lambda t: _replace_line(t, "date:", "date: 2022-03-01"), 11, "RFC 822"),
        (
            lambda t: _replace_line(t, "date:", "date: Wed, 01 Mar 2022 13:31:34 GMT"),
            11,
            "is a Tue",
        ),
        (lambda t: _replace_line(t, " - Aljazeera", "tags: x"), 6, "three '- ' items"),
        (lambda t: _replace_line(t, "author:", "layout: post"), 9, "unknown key 'layout'"),
        (lambda t: _replace_line(t, "title:", "title: 'it's'"), 3, "must be doubled"),
        (lambda t: t.replace("</div>", "</section>"), 42, "'</div>'"),
    ],
)
def test_format_errors_name_the_line(mutation, line: int, fragment: str) -> None:
    with pytest.raises(PostFormatError) as caught:
        parse(mutation(_seed()), source="x.txt")
    assert caught.value.line == line
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"x.txt:{line}: ")


def test_missing_keys_are_listed() -> None:
    text = "\n".join(line for line in _seed().split("\n") if not line.startswith("thumbnail:"))
    with pytest.raises(PostFormatError, match=r"missing key.*thumbnail"):
        parse(text)


def test_post_normalises_dates_to_utc_whole_seconds() -> None:
    local = datetime(2022, 3, 1, 21, 31, 34, 999, tzinfo=timezone(timedelta(hours=8)))
    post = Post(title="t", group="g", outlet="o", section="s", body="", date=local)
    assert post.date == datetime(2022, 3, 1, 13, 31, 34, tzinfo=UTC)
    assert format_date(post.date) == "Tue, 01 Mar 2022 13:31:34 GMT"


def test_post_refuses_naive_dates_and_multiline_headers() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Post(title="t", group="g", outlet="o", section="s", body="", date=datetime(2022, 1, 1))
    with pytest.raises(ValueError, match="control character"):
        Post(title="two\nlines", group="g", outlet="o", section="s", body="")


# -- properties -------------------------------------------------------------

_header_text = st.text(
    st.characters(
        blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufeff\ufffe\uffff\x85\u2028\u2029"
    ),
    max_size=40,
)
_dates = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    ),
)
_posts = st.builds(
    Post,
    title=_header_text,
    group=_header_text,
    outlet=_header_text,
    section=_header_text,
    body=st.text(max_size=200),
    date=_dates,
    headimg=_header_text,
    thumbnail=_header_text,
    author=_header_text,
    comments=st.booleans(),
    updated=_dates,
)


@settings(max_examples=400, deadline=None)
@given(_posts)
def test_any_post_survives_render_then_parse(post: Post) -> None:
    text = render(post)
    assert parse(text) == post
    assert render(parse(text)) == text


@settings(max_examples=300, deadline=None)
@given(_posts)
def test_front_matter_reads_the_same_in_a_yaml_parser(post: Post) -> None:
    """Hexo reads the front matter with a YAML parser: it must agree with us."""
    front = render(post).split("\n---\n")[1]
    data = yaml.safe_load(front)
    assert data["title"] == post.title
    assert data["categories"] == [post.group, post.outlet, post.section]
    assert data["author"] == post.author
    assert data["headimg"] == post.headimg
    assert data["thumbnail"] == post.thumbnail
    assert data["comments"] is post.comments
    assert data["date"] == format_date(post.date)
    if post.updated is None:
        assert "updated" not in data
    else:
        assert data["updated"] == format_date(post.updated)


@given(_dates)
def test_dates_round_trip(date: datetime | None) -> None:
    assert parse_date(format_date(date)) == (date.replace(microsecond=0) if date else None)


# -- updated: a revised post's second date ----------------------------------


def _seed_and_post() -> tuple[str, Post]:
    text = _seed()
    return text, parse(text)


def test_a_revised_post_gains_an_updated_line_right_after_date() -> None:
    text, post = _seed_and_post()
    revised = replace(post, updated=datetime(2022, 3, 2, 8, 0, 5, tzinfo=UTC))
    out = render(revised)
    date_line = f"date: {format_date(post.date)}\n"
    assert date_line + "updated: Wed, 02 Mar 2022 08:00:05 GMT\nthumbnail: " in out
    # Nothing else moves: dropping the line gives the seed back byte for byte.
    assert out.replace("updated: Wed, 02 Mar 2022 08:00:05 GMT\n", "") == text
    assert parse(out) == revised
    assert render(parse(out)) == out


def test_a_post_never_revised_has_no_updated_line() -> None:
    _, post = _seed_and_post()
    assert post.updated is None
    assert "updated:" not in render(post)


def test_updated_is_normalised_like_date() -> None:
    _, post = _seed_and_post()
    local = datetime(2022, 3, 2, 16, 0, 5, 999, tzinfo=timezone(timedelta(hours=8)))
    assert replace(post, updated=local).updated == datetime(2022, 3, 2, 8, 0, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"Post\.updated must be timezone-aware"):
        replace(post, updated=datetime(2022, 3, 2))


def test_updated_must_be_a_real_date() -> None:
    text, _ = _seed_and_post()
    date_line = next(line for line in text.split("\n") if line.startswith("date: "))
    bad = text.replace(date_line, date_line + "\nupdated: Invalid Date")
    with pytest.raises(PostFormatError, match="updated must be a real date"):
        parse(bad)
    worse = text.replace(date_line, date_line + "\nupdated: yesterday")
    with pytest.raises(PostFormatError, match="expected an RFC 822 GMT date"):
        parse(worse)
