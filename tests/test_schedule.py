"""Scheduling policy as data: when a feed is next due."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.policy.schedule import (
    JITTER,
    MAX_BACKOFF,
    ErrorClass,
    Hints,
    classify_status,
    next_after_error,
    next_after_success,
    startup_delay,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)
M15 = timedelta(minutes=15)


class NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


NJ = NoJitter()


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (None, None, ErrorClass.TRANSIENT),
        (500, None, ErrorClass.TRANSIENT),
        (503, None, ErrorClass.TRANSIENT),
        (503, 30.0, ErrorClass.THROTTLED),
        (429, None, ErrorClass.THROTTLED),
        (404, None, ErrorClass.PERMANENT),
        (403, None, ErrorClass.PERMANENT),
        (410, None, ErrorClass.GONE),
    ],
)
def test_classify(status: int | None, retry_after: float | None, expected: ErrorClass) -> None:
    assert classify_status(status, retry_after=retry_after) is expected


def test_success_waits_the_interval() -> None:
    assert next_after_success(NOW, M15, Hints(), rng=NJ) == NOW + M15


@pytest.mark.parametrize("field", ["ttl", "update_period", "max_age", "retry_after"])
def test_hints_can_only_lengthen_the_wait(field: str) -> None:
    longer = Hints(**{field: 3600.0})
    shorter = Hints(**{field: 60.0})
    assert next_after_success(NOW, M15, longer, rng=NJ) == NOW + timedelta(hours=1)
    assert next_after_success(NOW, M15, shorter, rng=NJ) == NOW + M15


def test_absurd_hints_are_capped() -> None:
    week = Hints(ttl=7 * 86400.0)
    assert next_after_success(NOW, M15, week, rng=NJ) == NOW + timedelta(hours=24)


def test_errors_back_off_exponentially_to_a_cap() -> None:
    waits = [
        next_after_error(NOW, M15, n, ErrorClass.PERMANENT, rng=NJ) - NOW for n in range(1, 10)
    ]
    assert waits[:4] == [M15, 2 * M15, 4 * M15, 8 * M15]
    assert waits[-1] == MAX_BACKOFF
    assert waits == sorted(waits)


def test_transient_errors_retry_quickly_twice_then_back_off() -> None:
    waits = [
        next_after_error(NOW, M15, n, ErrorClass.TRANSIENT, rng=NJ) - NOW for n in range(1, 12)
    ]
    assert waits[:6] == [
        timedelta(seconds=30),
        timedelta(minutes=2),
        M15,
        2 * M15,
        4 * M15,
        8 * M15,
    ]
    assert waits[-1] == MAX_BACKOFF
    assert waits == sorted(waits)


def test_throttled_waits_as_asked_regardless_of_streak() -> None:
    wait = next_after_error(NOW, M15, 7, ErrorClass.THROTTLED, retry_after=1800, rng=NJ)
    assert wait == NOW + timedelta(minutes=30)
    # but never sooner than the interval
    short = next_after_error(NOW, M15, 1, ErrorClass.THROTTLED, retry_after=5, rng=NJ)
    assert short == NOW + M15


def test_retry_after_lengthens_a_transient_backoff() -> None:
    wait = next_after_error(NOW, M15, 1, ErrorClass.TRANSIENT, retry_after=7200, rng=NJ)
    assert wait == NOW + timedelta(hours=2)


def test_jitter_is_bounded() -> None:
    rng = random.Random(1)
    for _ in range(200):
        delay = next_after_success(NOW, M15, Hints(), rng=rng) - NOW
        assert M15 <= delay <= M15 * (1 + JITTER)


def test_startup_spreads_within_ten_seconds_or_the_interval() -> None:
    rng = random.Random(2)
    delays = [startup_delay(timedelta(hours=1), rng=rng) for _ in range(100)]
    assert all(timedelta(0) <= d <= timedelta(seconds=10) for d in delays)
    short = [startup_delay(timedelta(seconds=2), rng=rng) for _ in range(50)]
    assert all(d <= timedelta(seconds=2) for d in short)
    assert len(set(delays)) > 90
