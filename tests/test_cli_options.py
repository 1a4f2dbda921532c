"""The command line as people type it: options where they put them, one line per
bad database URL, read-only commands that change nothing, status for scripts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from paths import SEEDS
from sqlalchemy import create_engine, inspect
from support_proc import aggregator

from aggregator.store import Store
from aggregator.store.engine import normalise_url


def test_shared_options_work_after_the_subcommand(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'after.db'}"
    elsewhere = f"sqlite:///{tmp_path / 'env.db'}"
    aggregator("replay", str(SEEDS), "--database-url", db, db=elsewhere, cwd=tmp_path)
    out = tmp_path / "out"
    done = aggregator("export", str(out), "--database-url", db, db=elsewhere, cwd=tmp_path)
    assert done.stdout == "5 written, 0 unchanged\n"
    assert not (tmp_path / "env.db").exists()

    config = tmp_path / "feeds.yaml"
    config.write_text(
        "feeds:\n  - {url: 'http://127.0.0.1:9/f.xml', outlet: O, section: S, group: G,"
        " interval: 5s}\n",
        encoding="utf-8",
    )
    # The loader warns about the short interval: the warning comes out as JSON.
    checked = aggregator(
        "fetch", "--config", str(config), "--log-format", "json", db=db, cwd=tmp_path, check=False
    )
    warnings = [json.loads(line) for line in checked.stderr.splitlines() if line.startswith("{")]
    assert any("5s" in w.get("message", "") for w in warnings), checked.stderr


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://a.db",
        "foo://x/y",
        "not a url",
        "postgresql://postgres@127.0.0.1:1/nothing-listens-here",
        "sqlite:////no/such/directory/x.db",
        "mysql://root@127.0.0.1/test",
    ],
)
@pytest.mark.parametrize("command", [("status",), ("replay", str(SEEDS))])
def test_a_bad_database_url_is_one_line_never_a_traceback(
    url: str, command: tuple[str, ...], tmp_path: Path
) -> None:
    done = aggregator(*command, db=url, cwd=tmp_path, check=False)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr


@pytest.mark.parametrize("command", [("status",), ("status", "--json"), ("export", "out")])
def test_read_only_commands_never_create_or_migrate(
    command: tuple[str, ...], database_url: str, tmp_path: Path
) -> None:
    done = aggregator(*command, db=database_url, cwd=tmp_path, check=False)
    assert done.returncode == 1
    assert "empty" in done.stderr or "no database file" in done.stderr, done.stderr
    if database_url.startswith("sqlite"):
        assert not Path(database_url.removeprefix("sqlite:///")).exists()
    else:
        engine = create_engine(normalise_url(database_url))
        try:
            assert inspect(engine).get_table_names() == []
        finally:
            engine.dispose()

    # A schema one migration behind is reported, not upgraded.
    aggregator("db", "upgrade", "0001", db=database_url, cwd=tmp_path)
    behind = aggregator(*command, db=database_url, cwd=tmp_path, check=False)
    assert behind.returncode == 1 and "aggregator db upgrade" in behind.stderr
    assert aggregator("db", "current", db=database_url, cwd=tmp_path).stdout.strip() == "0001"


def test_status_json_and_the_daemons_holding_leases(database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "feeds:\n  - {url: 'http://reader:s3cret@127.0.0.1:9/f.xml', outlet: 'O \"q\"',"
        " section: S, group: G}\n",
        encoding="utf-8",
    )
    failed = aggregator(
        "fetch", "--config", str(config), db=database_url, cwd=tmp_path, check=False
    )
    assert failed.returncode == 1  # nothing listens on port 9

    document = json.loads(aggregator("status", "--json", db=database_url, cwd=tmp_path).stdout)
    (feed,) = document["feeds"]
    assert "s3cret" not in json.dumps(document)
    assert feed["outlet"] == 'O "q"' and feed["error_class"] == "transient"
    assert feed["last_error"] and feed["error_streak"] == 1
    datetime.fromisoformat(feed["last_checked_at"])
    assert document["daemons"] == []
    assert "no daemon holds a lease" in aggregator("status", db=database_url, cwd=tmp_path).stdout

    store = Store.open(database_url)
    try:
        now = datetime.now(UTC) + timedelta(days=2)  # the failed feed is due by then
        claimed = store.claim_due(now=now, limit=5, lease=timedelta(days=3), owner="host-a:4242")
        assert claimed
    finally:
        store.close()
    assert json.loads(aggregator("status", "--json", db=database_url, cwd=tmp_path).stdout)[
        "daemons"
    ] == ["host-a:4242"]
    assert "polling now: host-a:4242" in aggregator("status", db=database_url, cwd=tmp_path).stdout


def test_a_database_password_never_reaches_the_error_message(tmp_path: Path) -> None:
    url = "postgresql://reader:s3cret-word@127.0.0.1:1/nothing-listens-here"
    done = aggregator("status", db=url, cwd=tmp_path, check=False)
    assert done.returncode == 1, done
    assert "s3cret-word" not in done.stderr + done.stdout
    assert "reader:***@127.0.0.1:1/nothing-listens-here" in done.stderr, done.stderr
