"""What the entry points share: one-line failures, config-group checks before Hydra, signal handling."""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable, NoReturn

from sustainable_ipa.config import CONFIG_DIR, group_options, validate


def fail(message: str, code: int = 2) -> None:
    from sustainable_ipa.db_driver import mask_passwords

    # every one-line failure goes out here: a URL in it (a setting, a library's reason) shows no password
    print(f"error: {mask_passwords(message)}", file=sys.stderr)
    sys.exit(code)


def exit_if_it_shows_a_password(err: Exception) -> None:
    """An unexpected error whose traceback holds a URL's password (a library's message quoting the URL): printed
    masked here, exit 1, as Hydra would print it unmasked."""
    import traceback

    from sustainable_ipa.db_driver import mask_passwords

    text = "".join(traceback.format_exception(err))
    if mask_passwords(text) != text:
        print(mask_passwords(text), file=sys.stderr, end="")
        sys.exit(1)


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


def hydra_entry(work: Callable, from_mlflow: bool | None = None, mlflow_run_id: str | None = None) -> None:
    """Run `work(cfg)` under `@hydra.main` with the project's config: bad input → one line and exit 2;
    Ctrl-C / SIGTERM → the open runs end KILLED and the process exits 130 / 143, whatever other signals follow.
    `from_mlflow`: started by `mlflow run` (default: it exported the id of the run it made), whose argv is
    normalised first. `mlflow_run_id`: the run `mlflow run` made (default: MLFLOW_RUN_ID), which a signal ends
    KILLED before `mlflow run` can mark it FAILED."""
    import hydra
    from omegaconf import DictConfig

    from sustainable_ipa.errors import UserError
    from sustainable_ipa.tracking import signals

    signals.install_stop_handlers()

    @hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
    def task(cfg: DictConfig):
        try:
            validate(cfg)  # every setting, for every entry point, before anything is loaded or recorded
            from sustainable_ipa.tracking.server import use_settings

            use_settings(cfg.tracking)  # how long a tracking server is waited for; where runs' local copies go
            return work(cfg)
        except UserError as err:
            fail(str(err))
        except Exception as err:
            exit_if_it_shows_a_password(err)
            raise  # Hydra prints it

    stopped, outer_run_id = None, None
    try:
        if from_mlflow if from_mlflow is not None else "MLFLOW_RUN_ID" in os.environ:
            sys.argv[1:] = normalize_argv(sys.argv[1:])
        outer_run_id = mlflow_run_id or os.environ.get("MLFLOW_RUN_ID")
        if outer_run_id and os.environ.get("MLFLOW_TRACKING_URI"):  # both exported by `mlflow run`
            from mlflow.tracking import MlflowClient

            from sustainable_ipa.tracking.runs import end_on_stop

            end_on_stop(MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"]), outer_run_id)
        check_group_choices(sys.argv[1:])
        task()
    except (KeyboardInterrupt, signals.Terminated) as err:
        stopped = err
    if stopped is not None:
        stop(stopped, outer_run_id)


def stop(stopped: BaseException, mlflow_run_id: str | None = None) -> NoReturn:
    """After Ctrl-C or SIGTERM: the runs still open end KILLED, one true line says so, exit 130 or 143.

    Runs end as the error unwinds (`tracked_run`); this ends any that are left (the outer run of `mlflow run`, one
    whose end failed)."""
    from sustainable_ipa.tracking import signals
    from sustainable_ipa.tracking.runs import end_open_runs, killed_runs, open_runs

    signals.begin_stop()
    try:
        failed = end_open_runs()
    except (KeyboardInterrupt, signals.Terminated):  # a store call hung past signals.HANG_S and a signal broke it
        failed = {run_id: "the store did not answer" for run_id in open_runs()}
    signum = signals.first_signal(stopped)
    what = "interrupted" if signum == signal.SIGINT else "terminated"
    if failed:
        reasons = "; ".join(f"{run_id}: {reason}" for run_id, reason in failed.items())
        line = (f"{what}, but {len(failed)} MLflow run(s) could not be ended ({reasons}); the next start in their "
                f"experiment on this host ends them KILLED")
    elif killed_runs():
        line = f"{what}: the open MLflow runs were ended KILLED ({len(killed_runs())})"
    else:
        line = f"{what} (no MLflow run was open)"
    if mlflow_run_id in killed_runs():  # `mlflow run` will overwrite it FAILED once this process has exited
        from sustainable_ipa.tracking.mlflow_run import restore_killed_later

        restore_killed_later(os.environ["MLFLOW_TRACKING_URI"], mlflow_run_id)
    print(f"error: {line}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    # The runs are closed; skip interpreter teardown, where torch's native worker threads can abort the process.
    os._exit(signals.EXIT_CODES[signum])
