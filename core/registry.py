"""Variants by name: small registries the product looks a config value up in, and plugin loading.

A registry maps a name (the value of one config key, e.g. mix.select_target) to a function. The
product registers R3V's own variants beside the registry's one consumer; research variants live in
modules that register themselves when imported, named by the config key `plugins` (saved in the run
folder, so a resume and `python -m eval.evaluate` import the same):

    SELECT_TARGETS = Registry("mix.select_target")

    @SELECT_TARGETS.register("answer")
    def answer_target(problem, chosen): ...

    SELECT_TARGETS.get(cfg.mix.select_target)      # an unknown name: ConfigError listing the known ones
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from core.config import ConfigError


class Registry:
    """Name -> variant for one config key."""

    def __init__(self, key: str):
        self.key = key
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: register the function under `name` (a name taken by another function is an error)."""
        def add(obj: Any) -> Any:
            taken = self._entries.get(name)
            if taken is not None and taken is not obj:
                raise ValueError(f"{self.key}: {name!r} is registered already (by "
                                 f"{getattr(taken, '__module__', '?')}.{getattr(taken, '__qualname__', taken)}); "
                                 f"pick another name")
            self._entries[name] = obj
            return obj
        return add

    def get(self, name: str) -> Any:
        if name not in self._entries:
            raise ConfigError(f"{self.key}={name!r} is not registered (known: {', '.join(self.names())}); a "
                              f"plugin's variant needs its module in plugins=[...], e.g. "
                              f"plugins=[experiments.variants] (experiments/README.md).")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


def load_plugins(names: Iterable[str]) -> None:
    """Import each named module (it registers its variants when imported)."""
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):
                raise ConfigError(f"plugins: no module {name!r} to import; give a module path importable "
                                  f"from the repository root, e.g. plugins=[experiments.variants].") from None
            raise
