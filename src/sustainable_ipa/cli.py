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


# Hydra's own options that take a value (hydra/_internal/utils.py, get_args_parser); `--info` takes one only when the
# next word names a topic, else it stands alone.
_OPTIONS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                       "--config-dir", "-cd", "--experimental-rerun"}
_INFO = {"--info", "-i"}
_INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
_CONFIGS_ELSEWHERE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Hydra's options, each followed by its value, and the overrides, each in the order given. A bare `--info` is
    written `--info=all` (what it means): put before an override, argparse would take the override for its topic."""
    options: list[str] = []
    overrides: list[str] = []
    args = iter(range(len(argv)))
    for i in args:
        arg = argv[i]
        if not arg.startswith("-"):
            overrides.append(arg)
            continue
        following = argv[i + 1] if i + 1 < len(argv) else None
        if arg in _INFO and following not in _INFO_TOPICS:
            options.append("--info=all")
            continue
        options.append(arg)
        if following is not None and (arg in _OPTIONS_WITH_VALUE or arg in _INFO):
            options.append(following)
            next(args)
    return options, overrides


def check_group_choices(argv: list[str]) -> None:
    """`adaptation=nope` gets one line listing the options (Hydra's own message is several lines long). Values are
    read with Hydra's override grammar: `a,b`, `choice(a,b)` and `glob(…)` sweeps are checked choice by choice."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import HydraException

    flags, overrides = split_argv(argv)
    elsewhere = _CONFIGS_ELSEWHERE & {f.partition("=")[0] for f in flags}
    if elsewhere or any(o.startswith("hydra.searchpath") for o in overrides):
        return  # configs from other folders may add options to a group: Hydra checks those choices itself
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return  # not the grammar: Hydra's own error names the override
    groups = {p.name for p in CONFIG_DIR.iterdir() if p.is_dir()}
    for override in parsed:
        key = override.key_or_group
        if key not in groups or override.is_delete():
            continue
        options = group_options(key)
        fix = f"Fix: choose one of {', '.join(options)} (files in conf/{key}/)"
        if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
            if not override.value().filter(options):
                fail(f"{override.input_line.partition('=')[2]} matches no {key}. {fix}")
            continue
        if override.value_type in (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP):
            choices = [_unquoted(v) for v in override.sweep_iterator()]
        elif override.value_type == ValueType.ELEMENT:
            choices = [_unquoted(override.value())]
        else:
            continue  # a range or interval of a group: Hydra rejects it itself
        for choice in choices:
            if choice not in options:
                fail(f"unknown {key} '{choice}'. {fix}")


def _unquoted(value) -> str:
    """A choice as Hydra looks it up: `"default"` and `default` name the same file."""
    from hydra.core.override_parser.types import QuotedString

    return value.text if isinstance(value, QuotedString) else str(value)


def normalize_argv(argv: list[str]) -> list[str]:
    """Options first (each with its value), and a later `key=value` replaces an earlier one for the same key.

    `mlflow run` builds `main.py adaptation={adaptation} … $(echo {hydra_options})`: options such as
    `-m adaptation=a,b` then come after the parameters, which Hydra's argument parser rejects.
    """
    options, overrides = split_argv(argv)
    keys = [a.partition("=")[0] if "=" in a else None for a in overrides]
    kept = [a for i, a in enumerate(overrides) if keys[i] is None or keys[i] not in keys[i + 1:]]
    return options + kept


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
