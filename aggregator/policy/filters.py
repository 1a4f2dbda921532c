"""Keep and block rules: which fetched items become exported posts.  Pure.

A rule is a mapping of item fields to regular expressions, as written in
feeds.yaml::

    block:
      - title: "广告|推广"          # any of the rules matching blocks the item
      - link: "/sponsored/"
      - {title: "直播", author: "小编"}   # several fields in one rule: all must match
    keep:                          # with keep rules, only items matching one are kept
      - body: "乌克兰|俄罗斯"

Fields: ``title`` (plain text), ``body`` (the cleaned body's *text*: tags
dropped, entities decoded, whitespace collapsed -- so a pattern never has to
care about markup), ``link`` (as the feed gave it) and ``author`` (the item's
own author; empty when the feed names none).  Patterns are Python regular
expressions, searched anywhere in the field, case-insensitively.

A blocked item is still stored (so it is counted and not judged again on
every poll), just never exported; ``aggregator reprocess`` applies changed
rules to stored items.  Patterns are compiled when feeds.yaml is loaded, so a
bad one is a config error with its line, never a surprise at fetch time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from aggregator.policy.dedup import text_of

__all__ = ["FIELDS", "Filters", "Rule", "compile_pattern"]

#: The item fields a rule may test.
FIELDS: Final = ("title", "body", "link", "author")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled as rules use it; ``ValueError`` says what is wrong."""
    if not pattern:
        raise ValueError("is empty; an empty pattern would match every item")
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise ValueError(
            f"bad regular expression {pattern!r}: {exc.msg}{where} "
            "(characters such as ( [ + * ? | need a backslash to be matched literally)"
        ) from None


@dataclass(frozen=True, slots=True)
class Rule:
    """Field -> pattern; matches an item when every pattern is found in its field.

    Equality and hashing use the pattern text, so a reloaded config with the
    same rules compares equal.
    """

    patterns: tuple[tuple[str, str], ...]
    _compiled: tuple[tuple[str, re.Pattern[str]], ...] = field(
        init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if not self.patterns:
            raise ValueError(f"a rule needs at least one of {', '.join(FIELDS)}")
        compiled = []
        for name, pattern in self.patterns:
            if name not in FIELDS:
                raise ValueError(f"unknown field {name!r}; rules test {', '.join(FIELDS)}")
            compiled.append((name, compile_pattern(pattern)))
        object.__setattr__(self, "_compiled", tuple(compiled))

    @classmethod
    def of(cls, mapping: Mapping[str, str]) -> Rule:
        return cls(tuple(mapping.items()))

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(regex.search(fields.get(name, "")) for name, regex in self._compiled)

    def describe(self) -> str:
        """The rule as a person wrote it, for ``status`` and logs."""
        return ", ".join(f"{name}: {pattern!r}" for name, pattern in self.patterns)


@dataclass(frozen=True, slots=True)
class Filters:
    """One feed's rules (the defaults' rules first, then the feed's own)."""

    keep: tuple[Rule, ...] = ()
    block: tuple[Rule, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keep or self.block)

    def verdict(
        self, *, title: str, body_html: str, link: str | None, author: str | None
    ) -> str | None:
        """``None`` to keep the item, else why it is blocked (stored with it).

        Block rules win over keep rules: an advert that also mentions a kept
        topic is still an advert.
        """
        if not self:
            return None
        fields = {
            "title": title,
            "body": text_of(body_html) if any(_tests(r, "body") for r in self.rules) else "",
            "link": link or "",
            "author": author or "",
        }
        for rule in self.block:
            if rule.matches(fields):
                return f"block rule {{{rule.describe()}}}"
        if self.keep and not any(rule.matches(fields) for rule in self.keep):
            return "no keep rule matched"
        return None

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.keep + self.block


def _tests(rule: Rule, name: str) -> bool:
    return any(field_name == name for field_name, _ in rule.patterns)
