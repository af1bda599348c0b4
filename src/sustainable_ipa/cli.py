"""What the entry points share: one-line failures, config-group checks before Hydra, signal handling."""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable

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


def hydra_entry(work: Callable) -> None:
    """Run `work(cfg)` under `@hydra.main` with the project's config: bad input → one line and exit 2;
    Ctrl-C / SIGTERM → the open runs end KILLED and the process exits 130 / 143."""
    import hydra
    from omegaconf import DictConfig

    from sustainable_ipa.errors import UserError
    from sustainable_ipa.tracking.runs import Terminated

    def terminate(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    sys.argv[1:] = normalize_argv(sys.argv[1:])
    check_group_choices(sys.argv[1:])

    @hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
    def task(cfg: DictConfig):
        try:
            return work(cfg)
        except UserError as err:
            fail(str(err))

    try:
        task()
    except (KeyboardInterrupt, Terminated) as stopped:
        what, code = ("interrupted", 130) if isinstance(stopped, KeyboardInterrupt) else ("terminated", 143)
        print(f"error: {what}: the open MLflow runs were ended KILLED", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # The runs are closed; skip interpreter teardown, where torch's native worker threads can abort the process.
        os._exit(code)
