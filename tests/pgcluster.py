"""A private PostgreSQL cluster a test may stop and start at will.

The shared server at 127.0.0.1:5432 serves every engineer's tests, so outage
tests must never touch it.  This runs ``initdb`` into a fresh directory and
``pg_ctl`` on a free port, as the ``postgres`` OS user when the test runs as
root (PostgreSQL refuses to run as root).  Missing binaries or user skip the
test with the reason shown.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support_proc import free_port

__all__ = ["PrivatePostgres", "private_cluster"]


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """One throw-away cluster: ``url`` to connect, ``stop()`` / ``start()`` to fail it."""

    def __init__(self, bin_dir: Path, root: Path, run_as: str | None) -> None:
        self.bin_dir, self.root, self.run_as = bin_dir, root, run_as
        self.data = root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: clients are disconnected, as when an admin restarts it."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivatePostgres]:
    """A started private cluster, stopped and deleted on exit (or the test skipped)."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    run_as: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser is missing")
        run_as = "postgres"
    # Not under tmp_path: pytest's directory is private to root, and the
    # socket path must stay short.
    root = Path(tempfile.mkdtemp(prefix="aggpg-"))
    if run_as:
        shutil.chown(root, user=run_as)
    cluster = PrivatePostgres(bin_dir, root, run_as)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        # Already stopped by the test, or never started: nothing to do.
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
