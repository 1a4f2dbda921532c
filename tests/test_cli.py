"""The command line, run as a user runs it: a real process, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from paths import ARCHIVE_REAL, SEEDS
from support_proc import aggregator


def test_help_lists_every_command_and_version(tmp_path: Path) -> None:
    out = aggregator("--help", db="sqlite://", cwd=tmp_path).stdout
    for command in ("db", "replay", "export", "run"):
        assert f"\n  {command} " in out
    from aggregator import __version__

    assert __version__ in aggregator("--version", db="sqlite://", cwd=tmp_path).stdout


def test_replay_then_export_reproduces_the_seeds(database_url: str, tmp_path: Path) -> None:
    first = aggregator("replay", str(SEEDS), db=database_url, cwd=tmp_path)
    assert first.stdout == "5 new, 0 duplicate\n"
    assert first.stderr == ""  # no progress bar in a pipe
    assert (
        aggregator("replay", str(SEEDS), db=database_url, cwd=tmp_path).stdout
        == "0 new, 5 duplicate\n"
    )

    out = tmp_path / "posts"
    assert (
        aggregator("export", str(out), db=database_url, cwd=tmp_path).stdout
        == "5 written, 0 unchanged\n"
    )
    exported = sorted(p.read_bytes() for p in out.iterdir())
    assert exported == sorted(p.read_bytes() for p in SEEDS.glob("*.txt"))
    assert all(p.suffix == ".md" for p in out.iterdir())
    again = aggregator("export", str(out), db=database_url, cwd=tmp_path)
    assert again.stdout == "0 written, 5 unchanged\n"


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_replay_then_export_into_the_same_folder_adds_no_file(
    database_url: str, tmp_path: Path
) -> None:
    """Replaying seeds/*.txt and exporting back leaves the folder as it was."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    originals = {p.name: p.read_bytes() for p in SEEDS.glob("*.txt")}
    for name, data in originals.items():
        (seeds / name).write_bytes(data)
    aggregator("replay", str(seeds), db=database_url, cwd=tmp_path)
    out = aggregator("export", str(seeds), db=database_url, cwd=tmp_path)
    assert out.stdout == f"0 written, {len(originals)} unchanged\n"
    assert _files(seeds) == originals
    fresh = tmp_path / "site"  # elsewhere, named <stem>.md for Hexo
    aggregator("export", str(fresh), db=database_url, cwd=tmp_path)
    assert _files(fresh) == {n.removesuffix(".txt") + ".md": b for n, b in originals.items()}


def test_the_generators_archive_replays_and_exports_byte_for_byte(
    database_url: str, tmp_path: Path
) -> None:
    if not ARCHIVE_REAL.is_dir():
        pytest.skip(f"the generator's real files are not at {ARCHIVE_REAL}")
    posts = tmp_path / "source" / "_posts"
    posts.mkdir(parents=True)
    originals = {p.name: p.read_bytes() for p in ARCHIVE_REAL.glob("*.md")}
    assert len(originals) > 100
    for name, data in originals.items():
        (posts / name).write_bytes(data)
    replayed = aggregator(
        "replay", str(posts), "--timezone", "Asia/Shanghai", db=database_url, cwd=tmp_path
    )
    assert replayed.stdout == f"{len(originals)} new, 0 duplicate\n"
    again = aggregator("export", str(posts), db=database_url, cwd=tmp_path)
    assert again.stdout == f"0 written, {len(originals)} unchanged\n"
    assert _files(posts) == originals
    fresh = tmp_path / "public"
    written = aggregator("export", str(fresh), db=database_url, cwd=tmp_path)
    assert written.stdout == f"{len(originals)} written, 0 unchanged\n"
    assert _files(fresh) == originals

    from aggregator.store import Store

    store = Store.open(database_url)
    try:
        dates = {s.slug: s.post.date for s in store.iter_posts()}
    finally:
        store.close()
    # Written '2021-11-09 08:09:39' without a zone, replayed as Beijing time.
    assert dates["mlog-club_34066030563"] == datetime(2021, 11, 9, 0, 9, 39, tzinfo=UTC)
    assert dates["cnbeta_13079412805"] == datetime(2022, 1, 25, 4, 31, 25, tzinfo=UTC)


def test_replay_refuses_an_unknown_timezone(tmp_path: Path) -> None:
    done = aggregator(
        "replay", str(SEEDS), "--timezone", "Beijing", db="sqlite://", cwd=tmp_path, check=False
    )
    assert done.returncode == 1
    assert "error: --timezone: unknown time zone 'Beijing'" in done.stderr


def test_export_rewrites_a_changed_file_only(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    aggregator("replay", str(SEEDS), db=db, cwd=tmp_path)
    out = tmp_path / "posts"
    aggregator("export", str(out), db=db, cwd=tmp_path)
    victim = sorted(out.iterdir())[0]
    victim.write_text("tampered", encoding="utf-8")
    assert aggregator("export", str(out), db=db, cwd=tmp_path).stdout == "1 written, 4 unchanged\n"
    assert victim.read_bytes() in {p.read_bytes() for p in SEEDS.glob("*.txt")}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_export_filters(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    aggregator("replay", str(SEEDS), db=db, cwd=tmp_path)
    aggregator("export", str(tmp_path / "gc"), "--outlet", "观察者网", db=db, cwd=tmp_path)
    assert len(list((tmp_path / "gc").iterdir())) == 1
    aggregator(
        "export", str(tmp_path / "march"), "--since", "2022-03-01T10:00", db=db, cwd=tmp_path
    )
    assert len(list((tmp_path / "march").iterdir())) == 3
    bad = aggregator(
        "export", str(tmp_path / "x"), "--since", "yesterday", db=db, cwd=tmp_path, check=False
    )
    assert bad.returncode == 2
    assert "not a date" in bad.stderr


def test_a_broken_file_is_reported_and_the_rest_replayed(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    for seed in SEEDS.glob("*.txt"):
        (archive / seed.name).write_bytes(seed.read_bytes())
    broken = archive / "zz_broken.md"
    broken.write_text("\n---\ntitle: 'x'\ncomments: perhaps\n---\n", encoding="utf-8")
    (archive / "notes.json").write_text("{}", encoding="utf-8")  # ignored: not a post file
    proc = aggregator(
        "replay", str(archive), db=f"sqlite:///{tmp_path / 'a.db'}", cwd=tmp_path, check=False
    )
    assert proc.returncode == 1
    assert proc.stdout == "5 new, 0 duplicate, 1 failed\n"
    assert f"{broken}:4: comments must be true or false" in proc.stderr


def test_export_into_an_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    aggregator("replay", str(SEEDS), db=db, cwd=tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    proc = aggregator("export", str(blocker / "posts"), db=db, cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "cannot create export directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    proc = aggregator(
        "replay", str(SEEDS), db="postgresql://nobody@127.0.0.1:9/none", cwd=tmp_path, check=False
    )
    assert proc.returncode == 1
    assert "cannot reach the database" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_default_database_is_aggregator_db_in_the_working_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AGGREGATOR_DATABASE_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "aggregator", "replay", str(SEEDS)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "aggregator.db").is_file()


@pytest.mark.parametrize("missing", ["nope", "nope/also"])
def test_replay_of_a_missing_path_fails_cleanly(tmp_path: Path, missing: str) -> None:
    proc = aggregator(
        "replay", missing, db=f"sqlite:///{tmp_path / 'a.db'}", cwd=tmp_path, check=False
    )
    assert proc.returncode == 1
    assert "no such file or directory" in proc.stderr


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal a long replay shows its progress; in a pipe it stays quiet (above)."""
    pty = pytest.importorskip("pty")
    archive = tmp_path / "archive"
    archive.mkdir()
    seeds = sorted(SEEDS.glob("*.txt"))
    for i in range(400):  # enough files that the bar is drawn at least once
        text = seeds[i % 5].read_text(encoding="utf-8").replace("title: '", f"title: '{i} ", 1)
        (archive / f"{i:04d}.txt").write_text(text, encoding="utf-8")
    env = {**os.environ, "AGGREGATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}
    env.pop("CI", None)  # rich treats CI as "not interactive"
    pid, fd = pty.fork()
    if pid == 0:  # the child runs the command with the pty as its terminal
        os.chdir(tmp_path)
        os.execve(sys.executable, [sys.executable, "-m", "aggregator", "replay", str(archive)], env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert "400 new, 0 duplicate" in out
    assert "replay" in out.replace("400 new, 0 duplicate", "")  # the bar's label
    assert "\x1b[" in out  # drawn with terminal control codes
