"""Running ``aggregator`` as a real process in tests: start, wait, signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

__all__ = ["AggregatorProcess", "aggregator", "free_port", "wait_for"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float, what: str, step: float = 0.1) -> None:
    """Poll ``predicate`` until it is truthy; fail the test with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class AggregatorProcess:
    """``python -m aggregator ARGS`` in the background, logs to a file."""

    def __init__(self, *args: str, db: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.args, self.db, self.cwd = args, db, cwd
        self.log_path = cwd / f"aggregator-{time.monotonic_ns()}.log"
        self.env = {**os.environ, "AGGREGATOR_DATABASE_URL": db, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> AggregatorProcess:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aggregator", *self.args],
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; returns (exit status, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit within {timeout}s of SIGTERM\n{self.log}") from None
        return code, time.monotonic() - started


def aggregator(
    *args: str,
    db: str,
    cwd: Path,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m aggregator ARGS`` to completion; ``check`` fails the test on a non-zero exit."""
    env = {**os.environ, "AGGREGATOR_DATABASE_URL": db, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc
