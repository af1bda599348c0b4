"""What the entry points share: one-line failures, config-group checks before Hydra, signal handling."""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable

from sustainable_ipa.config import CONFIG_DIR, group_options, validate


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


_CONFIGS_ELSEWHERE = ("config_path", "config_name", "config_dir")


def parse_hydra_argv(argv: list[str]):
    """argv read by Hydra's own argument parser (options and overrides in any order), or None where Hydra would
    refuse it: then Hydra's own message stands."""
    import contextlib
    import io

    from hydra._internal.utils import get_args_parser  # the table `@hydra.main` parses with

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            parsed, _ = get_args_parser().parse_known_intermixed_args(argv)
    except SystemExit:
        return None
    return parsed


def check_group_choices(argv: list[str]) -> None:
    """`adaptation=nope` gets one line listing the options (Hydra's own message is a dozen lines: the options, its
    config search path, a hint about HYDRA_FULL_ERROR). argv is read with Hydra's own parser and override grammar:
    `a,b`, `choice(a,b)` and `glob(…)` sweeps are checked choice by choice; whatever Hydra would refuse itself is
    left to Hydra's message."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import HydraException

    args = parse_hydra_argv(argv)
    if args is None:
        return  # Hydra refuses the command line itself
    overrides = args.overrides
    if any(getattr(args, key) for key in _CONFIGS_ELSEWHERE) or any(o.startswith("hydra.searchpath") for o in overrides):
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
    """For `mlflow run` only: the overrides first, a later `key=value` replacing an earlier one for the same key,
    then Hydra's options, each with its value, as given.

    `mlflow run` builds `main.py adaptation={adaptation} … $(echo {hydra_options})`: options such as
    `-m adaptation=a,b` then come between overrides, which Hydra's argument parser rejects, and the same key may
    come twice. Elsewhere argv goes to Hydra untouched.
    """
    args = parse_hydra_argv(argv)
    if args is None:
        return argv
    overrides, pending = [], list(args.overrides)
    options = []
    for token in argv:  # the overrides, in order; what is left are the options with their values
        if pending and token == pending[0]:
            overrides.append(pending.pop(0))
        else:
            options.append(token)
    keys = [a.partition("=")[0] if "=" in a else None for a in overrides]
    kept = [a for i, a in enumerate(overrides) if keys[i] is None or keys[i] not in keys[i + 1:]]
    return kept + options


def hydra_entry(work: Callable, from_mlflow: bool | None = None) -> None:
    """Run `work(cfg)` under `@hydra.main` with the project's config: bad input → one line and exit 2;
    Ctrl-C / SIGTERM → the open runs end KILLED and the process exits 130 / 143. `from_mlflow`: started by
    `mlflow run` (default: it exported the id of the run it made), whose argv is normalised first."""
    import hydra
    from omegaconf import DictConfig

    from sustainable_ipa.errors import UserError
    from sustainable_ipa.tracking.runs import Terminated

    def terminate(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    if from_mlflow if from_mlflow is not None else "MLFLOW_RUN_ID" in os.environ:
        sys.argv[1:] = normalize_argv(sys.argv[1:])
    check_group_choices(sys.argv[1:])

    @hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
    def task(cfg: DictConfig):
        try:
            validate(cfg)  # every setting, for every entry point, before anything is loaded or recorded
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
