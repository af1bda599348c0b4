"""What the entry points share: one-line failures and checking config-group choices before Hydra sees them."""

from __future__ import annotations

import sys

from sustainable_ipa.config import CONFIG_DIR, group_options


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def check_group_choices(argv: list[str]) -> None:
    """`adaptation=nope` gets one line listing the options (Hydra's own message is several lines long)."""
    groups = {p.name for p in CONFIG_DIR.iterdir() if p.is_dir()}
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in groups:
            continue
        options = group_options(key)
        for choice in value.split(","):  # multirun sweeps: a,b,c
            if choice and choice not in options:
                fail(f"unknown {key} '{choice}'. Fix: choose one of {', '.join(options)} (files in conf/{key}/)")


def normalize_argv(argv: list[str]) -> list[str]:
    """Flags first, and a later `key=value` replaces an earlier one for the same key.

    `mlflow run` builds `main.py adaptation={adaptation} … $(echo {hydra_options})`: options such as
    `-m adaptation=a,b` then come after the parameters, which Hydra's argument parser rejects.
    """
    flags = [a for a in argv if a.startswith("-")]
    overrides = [a for a in argv if not a.startswith("-")]
    keys = [a.partition("=")[0] if "=" in a else None for a in overrides]
    kept = [a for i, a in enumerate(overrides) if keys[i] is None or keys[i] not in keys[i + 1:]]
    return flags + kept
