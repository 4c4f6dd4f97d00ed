"""Input checks before a run starts, with every failure reported together.

A run checks its config values, model folder, data and images before it takes its folder. Each check
raises an `InputError` (ConfigError, DataError, ModelError are kinds of it) whose message names the key,
file or id and the fix; `Checks` runs them all and reports what failed in one message, so a user fixes
everything in one go instead of one failure per attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class InputError(ValueError):
    """Input a run cannot use (a config value, the model folder, the data); the message says how to fix it."""


class Checks:
    """Run checks one after another, keeping each failure instead of stopping at the first.

        checks = Checks()
        checks.run("config", check_values, cfg)
        data = checks.run("data", load_data, cfg)
        checks.raise_failures()   # one InputError naming every failure, if any
    """

    def __init__(self) -> None:
        self.failures: list[tuple[str, InputError | FileNotFoundError]] = []

    def run(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args), or None when it fails with an input error (kept under `what`, once: two splits of a
        missing folder fail alike)."""
        try:
            return fn(*args)
        except (InputError, FileNotFoundError) as e:
            if all(str(e) != str(seen) for _, seen in self.failures):
                self.failures.append((what, e))
            return None

    def ok(self, what: str) -> bool:
        """Whether no check named `what` has failed (checks that build on it are skipped otherwise)."""
        return all(name != what for name, _ in self.failures)

    def report(self) -> str:
        """The failures as one text (a single one as its own message); empty when all passed."""
        if len(self.failures) == 1:
            return str(self.failures[0][1])
        parts = []
        for what, error in self.failures:
            text = str(error).replace("\n", "\n    ")
            parts.append(f"[{what}] {text}")
        head = f"{len(self.failures)} problems with the inputs; nothing was started (fix each):"
        return "\n  ".join([head, *parts]) if parts else ""

    def raise_failures(self) -> None:
        """Raise the one failure as it is, or several as one InputError listing all of them."""
        if len(self.failures) == 1:
            raise self.failures[0][1]
        if self.failures:
            raise InputError(self.report())
