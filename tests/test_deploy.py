"""The deployment recipes: the systemd unit, the Dockerfile and compose file.

No Docker engine or systemd PID 1 runs on the machines that test this
project, so the recipes are checked the way a reviewer would read them: each
property a newcomer tripped over (single-file mounts, ownership, the images
directory beside the export directory, a health check on a fixed port, a
restart loop) is a test, `systemd-analyze verify` checks the unit where it
is installed, and the container's health-check script runs for real against
a local HTTP server.
"""

from __future__ import annotations

import http.server
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
import yaml
from paths import REPO

from aggregator.config.feeds import loads_config
from aggregator.service.daemon import DaemonOptions

UNIT = REPO / "deploy" / "aggregator.service"
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "deploy" / "compose.yaml"
HEALTHCHECK = REPO / "deploy" / "healthcheck.py"
README = REPO / "README.md"


def _unit() -> dict[str, dict[str, list[str]]]:
    """The unit as section -> key -> values (systemd allows repeated keys)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key)
    assert values, f"{UNIT.name}: {key}= is missing"
    return values[-1]


def _exec_start_export(service: dict[str, list[str]]) -> PurePosixPath:
    argv = shlex.split(_one(service, "ExecStart"))
    assert "--export" in argv, "ExecStart names no --export directory"
    return PurePosixPath(argv[argv.index("--export") + 1])


def _environment(service: dict[str, list[str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in service.get("Environment", []):
        for assignment in shlex.split(value):
            key, _, val = assignment.partition("=")
            env[key] = val
    return env


def _covered(path: PurePosixPath, roots: list[str]) -> bool:
    return any(path == PurePosixPath(r) or PurePosixPath(r) in path.parents for r in roots)


def test_unit_creates_and_may_write_everything_the_daemon_writes() -> None:
    service = _unit()["Service"]
    state = PurePosixPath("/var/lib") / _one(service, "StateDirectory")
    assert PurePosixPath(_one(service, "WorkingDirectory")) == state
    env = _environment(service)
    database = env["AGGREGATOR_DATABASE_URL"].removeprefix("sqlite:///")
    assert PurePosixPath(database).parent == state, "the SQLite file must live in StateDirectory"
    config = PurePosixPath("/etc") / _one(service, "ConfigurationDirectory")
    assert PurePosixPath(env["AGGREGATOR_CONFIG"]).parent == config

    export = _exec_start_export(service)
    writable = " ".join(service.get("ReadWritePaths", [])).split()
    assert _one(service, "ProtectSystem") == "strict"
    # images: archive writes <export>/../images (aggregator.content.images).
    assert _covered(export, writable), f"{export} is not in ReadWritePaths"
    assert _covered(export.parent / "images", writable), "the images directory is read-only"


def test_unit_stops_retrying_a_start_that_cannot_succeed() -> None:
    unit = _unit()
    assert _one(unit["Service"], "Restart") == "on-failure"
    burst = int(_one(unit["Unit"], "StartLimitBurst"))
    interval = int(_one(unit["Unit"], "StartLimitIntervalSec"))
    restart_sec = float(_one(unit["Service"], "RestartSec"))
    # Without a limit that the restarts can reach, a bad export directory
    # loops forever: `burst` restarts must fit in the interval.
    assert burst >= 1 and burst * restart_sec < interval


def test_unit_allows_the_drain_and_reloads_with_sighup() -> None:
    service = _unit()["Service"]
    assert float(_one(service, "TimeoutStopSec")) > DaemonOptions().grace
    assert "-HUP" in _one(service, "ExecReload")


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit is checked by the tests above only")
    executable = Path(sys.executable).with_name("aggregator")
    if not executable.exists():
        pytest.skip(f"{executable} is missing: install the project into the test venv")
    # verify checks that ExecStart exists, so point it at the installed one.
    text = UNIT.read_text(encoding="utf-8").replace(
        "/opt/aggregator/.venv/bin/aggregator", str(executable)
    )
    copy = tmp_path / "aggregator.service"
    copy.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if str(copy) in line]
    assert done.returncode == 0 and not complaints, complaints or done.stderr


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _docker_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            for assignment in shlex.split(rest):
                key, _, value = assignment.partition("=")
                env[key] = value
    return env


def _json_list(rest: str) -> list[str]:
    import json

    value = json.loads(rest)
    assert isinstance(value, list)
    return [str(v) for v in value]


def test_image_runs_unprivileged_and_owns_what_it_writes() -> None:
    instructions = _dockerfile()
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in {"root", "0"}
    volumes = [PurePosixPath(v) for w, r in instructions if w == "VOLUME" for v in _json_list(r)]
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    chowned = [PurePosixPath(p) for p in re.findall(r"chown(?: -R)? \S+ ([^&]+)", runs)[0].split()]

    env = _docker_env(instructions)
    cmd = next(_json_list(r) for w, r in instructions if w == "CMD")
    export = PurePosixPath(cmd[cmd.index("--export") + 1])
    config_dir = PurePosixPath(env["AGGREGATOR_CONFIG"]).parent
    database_dir = PurePosixPath(env["AGGREGATOR_DATABASE_URL"].removeprefix("sqlite:///")).parent
    # The images directory sits beside the export directory; all of them,
    # and the configuration *directory* (for hot reload and `add`), are
    # volumes the image's user owns.
    for needed in (export, export.parent / "images", config_dir, database_dir):
        assert _covered(needed, [str(v) for v in volumes]), f"{needed} is in no VOLUME"
        assert _covered(needed, [str(c) for c in chowned]), f"{needed} is not chowned"


def test_image_health_check_follows_the_configured_address() -> None:
    instructions = _dockerfile()
    check = next(rest for word, rest in instructions if word == "HEALTHCHECK")
    assert not re.search(r"\b8080\b", check), "the health check hard-codes a port"
    assert "healthcheck.py" in check
    copies = " ".join(rest for word, rest in instructions if word == "COPY")
    assert "deploy/healthcheck.py" in copies


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _run_check(http_value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)],
        env={"AGGREGATOR_HTTP": http_value, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_health_check_script_answers_for_the_port_it_is_given(
    health_server: http.server.ThreadingHTTPServer,
) -> None:
    port = health_server.server_address[1]
    _Health.status = 200
    assert _run_check(f"0.0.0.0:{port}").returncode == 0
    _Health.status = 503
    failed = _run_check(f"0.0.0.0:{port}")
    assert failed.returncode == 1 and "503" in failed.stderr
    _Health.status = 200
    health_server.shutdown()
    health_server.server_close()
    assert _run_check(f"127.0.0.1:{port}").returncode == 1


def _readme_commands(prefix: str) -> list[str]:
    text = re.sub(r"\\\n\s*", " ", README.read_text(encoding="utf-8"))
    return [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]


def test_readme_docker_recipe_mounts_directories_with_init_and_ownership() -> None:
    runs = _readme_commands("docker run")
    assert runs, "README has no docker run line"
    for line in runs:
        assert "--init" in line, line
        mounts = re.findall(r"-v\s+\"?([^\"\s]+)\"?", line)
        assert mounts and not any(m.endswith((".yaml", ".yml")) for m in mounts), line
    assert _readme_commands("sudo chown -R 10001:10001"), "no ownership step for the mounts"


def test_readme_systemd_recipe_creates_what_the_unit_expects() -> None:
    service = _unit()["Service"]
    text = README.read_text(encoding="utf-8")
    start = text.index("### systemd")
    recipe = text[start : text.index("### Docker", start)]
    assert "useradd --system" in recipe and _one(service, "User") in recipe
    assert "/opt/aggregator/.venv" in recipe
    assert _environment(service)["AGGREGATOR_CONFIG"].rsplit("/", 1)[0] in recipe
    assert str(_exec_start_export(service)) in recipe


def test_compose_runs_rsshub_beside_the_daemon_with_postgres_optional() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"rsshub", "aggregator", "postgres"} <= services.keys()
    daemon = services["aggregator"]
    assert daemon["init"] is True
    assert "rsshub" in daemon["depends_on"]
    assert daemon["depends_on"]["postgres"]["required"] is False
    assert services["postgres"]["profiles"] == ["postgres"]
    assert "profiles" not in services["rsshub"]
    # Every volume the image declares is mounted, as a directory.
    volumes = {PurePosixPath(v) for w, r in _dockerfile() if w == "VOLUME" for v in _json_list(r)}
    targets = {PurePosixPath(m.split(":")[1]) for m in daemon["volumes"]}
    assert volumes <= targets
    assert all(not m.split(":")[0].endswith((".yaml", ".yml")) for m in daemon["volumes"])
    grace = int(str(daemon["stop_grace_period"]).removesuffix("s"))
    assert grace > DaemonOptions().grace


def test_compose_recipe_points_the_shipped_feeds_at_the_rsshub_service() -> None:
    header = COMPOSE.read_text(encoding="utf-8")
    match = re.search(r"sed '(s#([^#]+)#([^#]+)#)' feeds.yaml", header)
    assert match, "the compose header no longer shows how feeds.yaml is adapted"
    shipped = (REPO / "feeds.yaml").read_text(encoding="utf-8")
    adapted = shipped.replace(match.group(2), match.group(3))
    config = loads_config(adapted, source="config/feeds.yaml")
    routed = [f for f in config.feeds if f.rsshub_route]
    assert routed, "the shipped feeds.yaml has no RSSHub route to show the pairing"
    assert all(f.url.startswith("http://rsshub:1200/") for f in routed)
