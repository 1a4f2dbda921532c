"""Runtime settings: command-line flags, with ``AGGREGATOR_*`` environment
variables as their defaults (so Docker and systemd need no flags).

This is the one place the options are named; README's configuration section
mirrors it.  Feed definitions are not settings: they live in feeds.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_DATABASE_URL", "ENV_PREFIX", "Settings"]

ENV_PREFIX = "AGGREGATOR"

#: Here, not in the store: every command's ``--help`` shows it, and
#: importing the store for one string would load SQLAlchemy (~0.3-0.7 s)
#: before click has even parsed the arguments.  ``aggregator.store`` keeps
#: the same value (tests/test_startup.py checks that the two agree).
DEFAULT_DATABASE_URL = "sqlite:///aggregator.db"


@dataclass(frozen=True, slots=True)
class Settings:
    """Options shared by every command.

    ============== ============================== ===========================
    option         environment                    default
    ============== ============================== ===========================
    database_url   AGGREGATOR_DATABASE_URL        sqlite:///aggregator.db
    log_level      AGGREGATOR_LOG_LEVEL           INFO
    log_format     AGGREGATOR_LOG_FORMAT          text (or json)
    config         AGGREGATOR_CONFIG              feeds.yaml
    ============== ============================== ===========================
    """

    database_url: str = DEFAULT_DATABASE_URL
    log_level: str = "INFO"
    log_format: str = "text"
    config: Path = Path("feeds.yaml")
