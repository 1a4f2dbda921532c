"""One error tree: every public exception class of the project is an AggregatorError,
keeps the built-in base callers relied on, and is named in the documented tree."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import aggregator
from aggregator import errors
from aggregator.errors import AggregatorError, ConfigurationError


def _public_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(aggregator.__path__, "aggregator."):
        if info.name == "aggregator.__main__":
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
                and not name.startswith("_")
            ):
                found[f"{info.name}.{name}"] = value
    return found


def test_every_public_error_is_in_the_tree_and_documented() -> None:
    found = _public_exceptions()
    assert len(found) >= 20  # the walk really saw the modules
    outside = sorted(name for name, cls in found.items() if not issubclass(cls, AggregatorError))
    assert outside == [], f"not under AggregatorError: {outside}"
    tree = errors.__doc__ or ""
    undocumented = sorted(n for n in found if n.rsplit(".", 1)[1] not in tree)
    assert undocumented == [], f"missing from the tree in aggregator/errors.py: {undocumented}"


def test_the_builtin_bases_callers_relied_on_are_kept() -> None:
    from aggregator.config.feeds import ConfigError
    from aggregator.hexo.export import ExportError
    from aggregator.hexo.post import PostFormatError
    from aggregator.service.server import BindError
    from aggregator.store.engine import DatabaseURLError

    assert issubclass(ConfigError, ConfigurationError) and issubclass(ConfigError, ValueError)
    assert issubclass(DatabaseURLError, ConfigurationError)
    assert issubclass(PostFormatError, ValueError)
    export = ExportError(13, "Permission denied")
    assert isinstance(export, OSError) and export.errno == 13
    assert issubclass(BindError, OSError)
