"""The ``publish:`` section of feeds.yaml: what to do after a pass stored posts.

Three publishers, each optional (see README "Publishing" and
docs/configuration.md):

* ``git``: commit the changed post files (and archived images) in the export
  directory's repository, and optionally push;
* ``command``: run a command (``npx hexo generate``) with a timeout;
* ``webhook``: POST a JSON document per new post to a URL, signed with an
  HMAC when a secret is set.

The models are pydantic, documented field by field with ``_setting`` like the
feed keys, so docs/configuration.md's publish table is generated from them
(:func:`publish_keys_table`) and cannot drift.  The loader
(:mod:`aggregator.config.feeds`) imports this module only when a file has a
``publish:`` section, so a feeds file without one costs nothing.
"""

from __future__ import annotations

import os
import re
import shlex
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from aggregator.config.feeds import (
    _check_http_url,
    _kind,
    _setting,
    format_duration,
    parse_duration,
)

__all__ = [
    "DEFAULT_PUBLISH_INTERVAL",
    "CommandPublish",
    "GitPublish",
    "PublishConfig",
    "WebhookPublish",
    "parse_publish",
    "publish_keys_table",
]

DEFAULT_PUBLISH_INTERVAL: Final = timedelta(seconds=60)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_AUTHOR = re.compile(r"^\s*(?P<name>[^<>]*?)\s*<(?P<email>[^<>\s]+)>\s*$")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _duration(value: object, *, minimum: timedelta = timedelta(0), what: str = "") -> timedelta:
    """A non-negative duration (``60s``, ``10m``; a bare number is seconds)."""
    if isinstance(value, timedelta):
        duration = value
    else:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"must be a duration such as 60s or 10m, got {_kind(value)}")
        if isinstance(value, int | float) and value < 0:
            raise ValueError(f"must not be negative, got {value!r}")
        if isinstance(value, str) and value.strip().startswith("-"):
            raise ValueError(f"must not be negative, got {value!r}")
        duration = (
            timedelta(0)
            if (isinstance(value, int | float) and value == 0)
            or (isinstance(value, str) and value.strip() in ("0", "0s"))
            else parse_duration(value)
        )
    if duration < minimum:
        raise ValueError(
            f"{format_duration(duration)} is shorter than the {format_duration(minimum)} "
            f"minimum{what}"
        )
    return duration


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("has no value; give one, or delete the line to use the default")
        return value


class GitPublish(_Section):
    """``publish.git``: commit (and push) the export directory's changes."""

    push: bool = _setting(
        "boolean",
        "Push after committing. A push that fails is retried with back-off, and again at the "
        "next round; commits are never lost (they stay in the local repository).",
        default="`false`",
    )
    remote: str = _setting("text", "The remote to push to.", default="`origin`")
    branch: str | None = _setting(
        "text",
        "The remote branch to push to.",
        default="the checked-out branch",
    )
    author: str | None = _setting(
        "`Name <email>`",
        "Author and committer of the commits.",
        default=(
            "the repository's `user.name`/`user.email`, else `aggregator <aggregator@localhost>`"
        ),
    )
    retries: int = _setting(
        "whole number",
        "Push attempts per round after the first fails, with doubling pauses.",
        default="`3`",
    )
    retry_delay: timedelta = _setting(
        "duration", "The pause before the first push retry (then doubled).", default="`2s`"
    )
    timeout: timedelta = _setting(
        "duration", "Time limit for each git command (the push included).", default="`2m`"
    )
    paths: tuple[str, ...] = _setting(
        "list of paths",
        "What to commit, relative to the export directory.",
        default="the export directory and its sibling `images` (archived images)",
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {
                "push": False,
                "remote": "origin",
                "retries": 3,
                "retry_delay": "2s",
                "timeout": "2m",
                "paths": (".", "../images"),
                **data,
            }
        return data

    @field_validator("remote", "branch")
    @classmethod
    def _ref(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value) or value.startswith("-"):
            raise ValueError(f"must be a git remote or branch name, got {value!r}")
        return value

    @field_validator("author")
    @classmethod
    def _author(cls, value: str) -> str:
        match = _AUTHOR.match(value)
        if match is None or not match["name"]:
            raise ValueError(f"must read like `Site Bot <bot@example.com>`, got {value!r}")
        return value

    @field_validator("retries")
    @classmethod
    def _retries(cls, value: int) -> int:
        if value < 0 or value > 20:
            raise ValueError(f"must be a whole number from 0 to 20, got {value}")
        return value

    @field_validator("retry_delay", mode="before")
    @classmethod
    def _retry_delay(cls, value: object) -> timedelta:
        return _duration(value)

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> timedelta:
        return _duration(value, minimum=timedelta(seconds=1))

    @field_validator("paths", mode="before")
    @classmethod
    def _paths(cls, value: object) -> object:
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(f"must be a list of paths like [., ../images], got {_kind(value)}")
        for item in value:
            if not isinstance(item, str) or not item.strip() or item.startswith("~"):
                raise ValueError(f"each path must be a relative or absolute path, got {item!r}")
        return tuple(value)

    def author_parts(self) -> tuple[str, str] | None:
        """``author`` as (name, email), or None when not set."""
        if self.author is None:
            return None
        match = _AUTHOR.match(self.author)
        assert match is not None  # checked on load
        return match["name"], match["email"]


class CommandPublish(_Section):
    """``publish.command``: run a command, e.g. ``npx hexo generate``."""

    run: tuple[str, ...] = _setting(
        "text or list",
        "The command and its arguments; text is split like a shell would (no shell runs: "
        "no pipes, no `$VARS`), a list is taken as is.",
        default="**required**",
    )
    cwd: Path | None = _setting(
        "directory path",
        "Where it runs; a relative path is taken from the directory of feeds.yaml.",
        default="the directory of feeds.yaml",
    )
    timeout: timedelta = _setting(
        "duration",
        "Time limit; then its whole process group is stopped (SIGTERM, SIGKILL 5 s later).",
        default="`10m`",
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "run" not in data:
                raise ValueError("needs run:, the command to run, e.g. run: npx hexo generate")
            data = {"timeout": "10m", **data}
        return data

    @field_validator("run", mode="before")
    @classmethod
    def _run(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                value = shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot be split into arguments ({exc})") from None
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(
                f"must be a command like `npx hexo generate` or a list of its words, "
                f"got {_kind(value)}"
            )
        if not all(isinstance(word, str) for word in value) or not str(value[0]).strip():
            raise ValueError("every word of the command must be text, the first one not empty")
        return tuple(value)

    @field_validator("cwd", mode="before")
    @classmethod
    def _cwd(cls, value: object) -> object:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"must be a directory path, got {_kind(value)}")
        if value.startswith("~"):
            raise ValueError(f"~ is not expanded; write the full path, not {value!r}")
        return Path(value)

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> timedelta:
        return _duration(value, minimum=timedelta(seconds=1))


class WebhookPublish(_Section):
    """One ``publish.webhook`` entry: POST each new post to ``url``."""

    name: str = _setting(
        "text (letters, digits, `_.-`)",
        "Names the webhook in metrics, `status` and the delivery queue; renaming it starts a "
        "new queue.",
        default="`webhook`",
    )
    url: str = _setting("http(s) URL", "Where each new post is POSTed.", default="**required**")
    secret: str | None = _setting(
        "text",
        "Signs each request: `X-Aggregator-Signature: sha256=<hex HMAC-SHA256 of the body>`.",
        default="none (unsigned)",
    )
    secret_env: str | None = _setting(
        "environment variable name",
        "Read the secret from this environment variable instead of the file.",
        default="none",
    )
    timeout: timedelta = _setting("duration", "Time limit of one request.", default="`10s`")
    backoff: timedelta = _setting(
        "duration",
        "The wait before retrying a failed delivery; doubled after each failure.",
        default="`30s`",
    )
    max_backoff: timedelta = _setting(
        "duration", "The longest wait between retries of one delivery.", default="`1h`"
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "url" not in data:
                raise ValueError("needs url:, the http(s) address to POST new posts to")
            data = {
                "name": "webhook",
                "timeout": "10s",
                "backoff": "30s",
                "max_backoff": "1h",
                **data,
            }
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter or "
                f"digit), got {value!r}"
            )
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if not value:
            raise ValueError("is empty; remove it to send unsigned requests")
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError(
                f"must be an environment variable name like HOOK_SECRET, got {value!r}"
            )
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> timedelta:
        return _duration(value, minimum=timedelta(seconds=1))

    @field_validator("backoff", "max_backoff", mode="before")
    @classmethod
    def _backoff(cls, value: object) -> timedelta:
        return _duration(value)

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookPublish:
        if self.secret is not None and self.secret_env is not None:
            raise ValueError("give secret or secret_env, not both")
        if self.max_backoff < self.backoff:
            raise ValueError(
                f"max_backoff ({format_duration(self.max_backoff)}) is shorter than backoff "
                f"({format_duration(self.backoff)})"
            )
        return self

    @property
    def publisher(self) -> str:
        """Its name in the ``publishers`` table, metrics and status: ``webhook:<name>``."""
        return f"webhook:{self.name}"

    def resolve_secret(self) -> str | None:
        """The signing secret, from the file or the environment (read at each use).

        Raises :class:`KeyError` naming the variable when ``secret_env`` is
        set but the variable is not: sending unsigned would be a silent
        downgrade.
        """
        if self.secret_env is None:
            return self.secret
        value = os.environ.get(self.secret_env)
        if not value:
            raise KeyError(self.secret_env)
        return value


class PublishConfig(_Section):
    """The whole ``publish:`` section."""

    interval: timedelta = _setting(
        "duration",
        "At most one publishing round per this much time; changes in between are gathered "
        "into the next round.",
        default="`60s`",
    )
    git: GitPublish | None = _setting("mapping", "Commit and push; see below.", default="none")
    command: CommandPublish | None = _setting(
        "mapping", "Run a command; see below.", default="none"
    )
    webhook: tuple[WebhookPublish, ...] = _setting(
        "mapping or list of mappings",
        "POST new posts; several webhooks need distinct `name`s.",
        default="none",
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {"interval": DEFAULT_PUBLISH_INTERVAL, "webhook": (), **data}
            if isinstance(data["webhook"], dict):
                data["webhook"] = (data["webhook"],)
        return data

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: object) -> timedelta:
        return _duration(value, minimum=timedelta(seconds=1), what=" between publishing rounds")

    @field_validator("webhook")
    @classmethod
    def _unique(cls, value: tuple[WebhookPublish, ...]) -> tuple[WebhookPublish, ...]:
        names = [hook.name for hook in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(
                f"webhook names must differ ({', '.join(twice)} used twice); give each a name:"
            )
        return value

    @property
    def publishers(self) -> tuple[str, ...]:
        """The configured publishers' names, in the order a round runs them."""
        names = ["git"] if self.git is not None else []
        if self.command is not None:
            names.append("command")
        return (*names, *(hook.publisher for hook in self.webhook))

    def anchored(self, base_dir: Path | None) -> PublishConfig:
        """This config with ``command.cwd`` made absolute against ``base_dir`` (feeds.yaml's)."""
        if self.command is None or base_dir is None:
            return self
        cwd = self.command.cwd
        if cwd is None:
            cwd = base_dir
        elif not cwd.is_absolute():
            cwd = base_dir / cwd
        return self.model_copy(update={"command": self.command.model_copy(update={"cwd": cwd})})


def _describe(err: Any) -> str:
    kind, value = err["type"], err.get("input")
    if kind == "value_error":
        return str(err.get("ctx", {}).get("error", err["msg"]))
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing (required)"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {_kind(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, got {_kind(value)}"
    if kind == "string_type":
        return f"must be text, got {_kind(value)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping of keys, got {_kind(value)}"
    return str(err["msg"])


def parse_publish(
    data: object, base_dir: Path | None
) -> tuple[PublishConfig | None, list[tuple[tuple[str | int, ...], str]]]:
    """Validate a ``publish:`` value: the config, or the problems as (key path, message)."""
    if not isinstance(data, dict):
        return None, [((), f"must be a mapping with git:, command: or webhook:, got {_kind(data)}")]
    try:
        config = PublishConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(part for part in err["loc"] if not str(part).startswith("function-"))
            problems.append((loc, _describe(err)))
        return None, problems
    return config.anchored(base_dir), []


def publish_keys_table() -> str:
    """docs/configuration.md's table of ``publish:`` keys, built from the models."""
    lines = ["| Key | Type | Default | Meaning |", "|---|---|---|---|"]
    sections: list[tuple[str, type[BaseModel]]] = [
        ("publish", PublishConfig),
        ("publish.git", GitPublish),
        ("publish.command", CommandPublish),
        ("publish.webhook", WebhookPublish),
    ]
    for prefix, model in sections:
        for key, info in model.model_fields.items():
            extra = info.json_schema_extra
            assert isinstance(extra, dict), key
            lines.append(
                f"| `{prefix}.{key}` | {extra['kind']} | {extra.get('default', '')} | "
                f"{info.description} |"
            )
    return "\n".join(lines) + "\n"
