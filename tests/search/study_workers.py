"""Several `python src/search.py` workers on one study storage, on made-up profiles (no model is built), and the
checks that no completed trial was lost or duplicated. Shared by the storage tests and bench/bench_storage.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[2]
INJECT = Path(__file__).resolve().parent / "inject"  # sitecustomize.py: holds one chosen trial in flight
# A 16-configuration space every configuration of which meets the SLA (as tests/search/test_study.py's TINY).
TINY = ["search.space.detector.precision=[fp32]", "search.space.classifier.precision=[fp32]",
        "search.space.detector.runtime=[torch]", "search.space.classifier.runtime=[torch]",
        "search.space.detector.variants=[yolov5n]", "search.space.classifier.variants=[resnet18,resnet34]",
        "search.space.detector.batch_size=[1,2]", "search.space.classifier.batch_size=[1,4]",
        "search.space.detector.threads=[1]", "search.space.classifier.threads=[1]",
        "search.space.detector.replicas=[1,2]", "search.space.classifier.replicas=[1]",
        "hardware.cores=3", "search.sampler=random", "trial.sla_s=30", "search.load_rps=0.5"]
# the study tests' (tests/search/conftest.py): every configuration keeps up, so no test depends on the machine's
# speed of the moment
SEARCH_TINY = [*TINY, "profiling.repeats=1"]
STUDY = "video-cpu"


def store_overrides(folder: Path) -> list[str]:
    """The MLflow store, idle cache and energy lock under `folder` (as tests/helpers.py's)."""
    return [f"tracking.uri=sqlite:///{folder}/mlruns/mlflow.db", f"tracking.artifact_root={folder}/mlruns/artifacts",
            f"energy.idle_cache={folder}/mlruns/idle.json", f"energy.lock_path={folder}/energy.lock"]


def worker_overrides(folder: Path, storage: str, n_trials: int, *extra: str) -> list[str]:
    return [*TINY, *store_overrides(folder), f"profiling.cache_dir={folder}/profiles", f"search.storage={storage}",
            f"search.n_trials={n_trials}", *extra]


def write_fake_profiles(overrides) -> Path:
    """Made-up stage profiles for every row the configured space needs, in the profile cache the search reads:
    the profile evaluator then composes from them, and no model is built or timed. `overrides`: a list, or the
    composed config itself."""
    from sustainable_ipa.config import compose
    from sustainable_ipa.data import load_dataset
    from sustainable_ipa.fingerprint import this_machine
    from sustainable_ipa.search.profiler import cache_path, missing_profiles
    from sustainable_ipa.search.profiles import ProfileTable, StageProfile
    from sustainable_ipa.search.space import configured_space
    from sustainable_ipa.families import stage_families
    from sustainable_ipa.search.workload import pipeline_workload

    cfg = compose(overrides) if isinstance(overrides, list) else overrides
    space = configured_space(cfg, None)
    rows = []
    for i, (stage, variant, batch, threads, precision, runtime) in enumerate(missing_profiles(space, None)):
        base_s = (0.02 if stage == "detector" else 0.005) * (1 + i % 3) * batch ** 0.7 / threads
        rows.append(StageProfile(stage, variant, batch, threads, tuple(base_s * (1 + 0.01 * k) for k in range(20)),
                                 0.5 * base_s * 20 / batch, "estimate", precision=precision, runtime=runtime))
    items = pipeline_workload(stage_families(cfg.pipeline), load_dataset(cfg.dataset)).items_per_request()
    path = cache_path(cfg.profiling.cache_dir, cfg.hardware.name, this_machine())
    ProfileTable(rows, cfg.hardware.name, items, this_machine().key).save(path)
    return path


def prepare_store(overrides: list[str]) -> None:
    """The MLflow store and its experiment, made before the workers start (MLflow's own first-time migration of a
    SQLite store is not safe against processes starting at the same moment)."""
    from sustainable_ipa.config import compose
    from sustainable_ipa.tracking.store import open_store

    cfg = compose(overrides)
    open_store(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)


def start_worker(folder: Path, overrides: list[str], log: Path, env: dict | None = None,
                 entry: str = "search.py") -> subprocess.Popen:
    """`python src/<entry> overrides` as a user types it, run from `folder`, its output in `log`."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "src" / entry), *overrides], cwd=folder, env=full_env,
                                stdout=out, stderr=subprocess.STDOUT)


def start_proxy(folder: Path, database_url: str, port: int | None = None, timeout_s: float = 120):
    """`python src/storage_proxy.py search.storage=<database> search.proxy.port=<port>`, as documented; returns the
    process and its address once it says it listens."""
    from postgres_server import free_port

    port = port or free_port()
    log = folder / "proxy.log"
    proxy = start_worker(folder, [f"search.storage={database_url}", f"search.proxy.port={port}"], log,
                         entry="storage_proxy.py")
    deadline = time.monotonic() + timeout_s
    while "study storage proxy on" not in log.read_text():
        if proxy.poll() is not None or time.monotonic() > deadline:
            proxy.kill()
            raise AssertionError(f"the storage proxy did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return proxy, f"grpc://127.0.0.1:{port}"


def hang_env(trial_number: int, marks: Path) -> dict:
    marks.mkdir(parents=True, exist_ok=True)
    return {"PYTHONPATH": os.pathsep.join([str(INJECT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "SIPA_TEST_HANG_TRIAL": str(trial_number), "SIPA_TEST_HANG_MARK": str(marks)}


def wait_for_file(folder: Path, timeout_s: float, workers=()) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if found:
            return found[0]
        ended = [w for w in workers if w.poll() is not None]
        assert not ended, f"a worker ended (rc {ended[0].returncode}) before the trial it should hold began"
        time.sleep(0.05)
    raise AssertionError(f"nothing appeared in {folder} within {timeout_s} s")


def trial_ledger(storage: str, n_trials: int, study_name: str = STUDY) -> dict:
    """The study as the workers left it, checked: exactly n_trials COMPLETE trials of configurations not evaluated
    before them, with distinct numbers and distinct MLflow runs (a configuration proposed again is answered from the
    study, without a run); every other trial FAIL (a dead worker's, retried once with the same parameters) or
    PRUNED as surplus, never evaluated. Returns the trials by state (COMPLETE: the new configurations only; ANSWERED:
    those answered from the study)."""
    from sustainable_ipa.search.configurations import ANSWERED_FROM, is_new_configuration
    from sustainable_ipa.search.slots import SURPLUS_ATTR
    from sustainable_ipa.search.storage import make_storage
    from sustainable_ipa.search.study import TRIAL_RUN_ATTR

    study = optuna.load_study(study_name=study_name, storage=make_storage(storage, heartbeat_s=None))
    trials = study.get_trials(deepcopy=False)
    by_state = {state: [t for t in trials if t.state == state] for state in optuna.trial.TrialState}
    complete = [t for t in by_state[optuna.trial.TrialState.COMPLETE] if is_new_configuration(t)]
    by_state[optuna.trial.TrialState.COMPLETE], answered = complete, [
        t for t in by_state[optuna.trial.TrialState.COMPLETE] if not is_new_configuration(t)]
    assert len(complete) == n_trials, Counter(t.state.name for t in trials)
    assert len({t.number for t in trials}) == len(trials)
    runs = [t.user_attrs.get(TRIAL_RUN_ATTR) for t in complete]
    assert None not in runs and len(set(runs)) == len(runs), "a completed trial without its own MLflow run"
    for t in answered:  # the values of the configuration's first trial, nothing run for it
        first = next(f for f in complete if f.number == t.user_attrs[ANSWERED_FROM])
        assert t.params == first.params and t.values == first.values and t.user_attrs.get(TRIAL_RUN_ATTR) is None
    assert not by_state[optuna.trial.TrialState.RUNNING] and not by_state[optuna.trial.TrialState.WAITING]
    for t in by_state[optuna.trial.TrialState.PRUNED]:
        assert t.user_attrs.get(SURPLUS_ATTR) and TRIAL_RUN_ATTR not in t.user_attrs, t
    for failed in by_state[optuna.trial.TrialState.FAIL]:  # its retry: the same parameters, completed
        [retry] = [t for t in complete + answered if t.system_attrs.get("failed_trial") == failed.number]
        assert retry.params == failed.params and retry.number > failed.number
    return {"study": study, "ANSWERED": answered, **{state.name: ts for state, ts in by_state.items()}}
