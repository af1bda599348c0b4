"""Trials per second of the profile-evaluator study with 1, 2 and 4 workers on SQLite, PostgreSQL and Optuna's gRPC
storage proxy (in front of PostgreSQL), in one run on this machine; where a worker's time goes; and that no completed
trial was lost or duplicated in any configuration (exactly n_trials COMPLETE, distinct numbers and run ids, every
other trial a PRUNED surplus that was never evaluated).

    python bench/bench_storage.py                  # 3 storages × 1, 2, 4 workers × 3 studies of 100 trials
    python bench/bench_storage.py --reps 5 --trials 200 --storages postgresql --workers 1 2
    python bench/bench_storage.py --end-to-end     # also real `python src/search.py` workers (MLflow included)

It starts its own throwaway PostgreSQL cluster (tests/postgres_server.py, commits durable: fsync on, as SQLite's are)
and the proxy with the documented command (`python src/storage_proxy.py`), all on this machine's loopback.

A worker runs the study's Optuna calls as `src/search.py` makes them (search/study.py, run_study: the wait for a slot,
suggest, the surplus check, the profile evaluator, the SLA constraint, the trial's run id and metrics as user
attributes, tell, heartbeats) on the default space and sampler (TPE) with made-up profiles, without the MLflow record
of each trial. Workers are started once and wait at a barrier before each study, so start-up is not counted:
trials per second = n_trials / (last worker done − go). `--end-to-end` runs real `src/search.py` workers on
PostgreSQL with their MLflow record (a SQLite store), timed from the trials' own start and completion times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tests" / "search")]

STORAGES = ("sqlite", "postgresql", "grpc")
PHASES = ("sampler", "storage", "evaluate", "wait", "other")


def overrides_for(folder: Path) -> list[str]:
    """The default study (space, objectives, TPE) on made-up profiles, on this machine's cores."""
    from study_workers import store_overrides

    return [*store_overrides(folder), f"profiling.cache_dir={folder}/profiles",
            f"hardware.cores={len(os.sched_getaffinity(0))}"]


# A worker: started once, runs one study per job given on stdin -----------------------------------------------------
class Phases:
    """Own time (callees excluded) of the calls wrapped, on the main thread only (not the heartbeat thread)."""

    def __init__(self):
        self.own, self.calls, self.stack = Counter(), Counter(), []
        self.main = threading.get_ident()

    def wrap(self, phase: str, fn):
        def timed(*args, **kwargs):
            if threading.get_ident() != self.main:
                return fn(*args, **kwargs)
            self.stack.append(0.0)
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - began
                self.own[phase] += elapsed - self.stack.pop()
                self.calls[phase] += 1
                if self.stack:
                    self.stack[-1] += elapsed
        return timed


STORAGE_METHODS = ("create_new_trial", "set_trial_param", "set_trial_state_values", "set_trial_user_attr",
                   "set_trial_system_attr", "get_trial", "get_all_trials", "get_trial_id_from_study_id_trial_number",
                   "get_study_directions", "get_study_user_attrs", "get_study_system_attrs", "get_best_trial",
                   "_get_stale_trial_ids", "get_trial_number_from_id", "get_trial_params")
SAMPLER_METHODS = ("infer_relative_search_space", "sample_relative", "sample_independent", "before_trial",
                   "after_trial")


def worker(index: int) -> None:
    import optuna
    from omegaconf import OmegaConf

    import sustainable_ipa.search.slots as slots_module
    from sustainable_ipa.compat.optuna_private import rdb_behind, study_storage
    from sustainable_ipa.config import available_cores, compose
    from sustainable_ipa.fingerprint import this_machine
    from sustainable_ipa.metrics.latency import sla_violation_s
    from sustainable_ipa.search.evaluators import ProfileEvaluator
    from sustainable_ipa.search.objectives import resolve_objectives
    from sustainable_ipa.search.profiler import cache_path
    from sustainable_ipa.search.profiles import ProfileTable
    from sustainable_ipa.search.slots import TrialSlots
    from sustainable_ipa.search.space import configured_space
    from sustainable_ipa.search.study import SLA_CONSTRAINT, TRIAL_RUN_ATTR, metric_value, open_study, suggest

    def say(**message):
        print(json.dumps(message), flush=True)

    base = previous = None
    for line in sys.stdin:
        job = json.loads(line)
        backend = rdb_behind(previous)  # the last study's connections, closed
        if backend is not None:
            backend.engine.dispose()
        elif hasattr(previous, "close"):
            previous.close()
        if base is None:
            base = compose(job["overrides"])
            objectives = resolve_objectives(base.search.objectives)
            space = configured_space(base, available_cores(base.hardware))
            profiles = ProfileTable.load(cache_path(base.profiling.cache_dir, base.hardware.name, this_machine()))
            evaluator = ProfileEvaluator(profiles, base)
            machine = this_machine().key
        cfg = OmegaConf.merge(base, {"search": {"storage": job["storage"], "study_name": job["study"],
                                                "n_trials": job["n_trials"], "seed": index}})
        study = open_study(cfg, objectives)
        phases = Phases()
        storage, sampler = study_storage(study), study.sampler
        for name in STORAGE_METHODS:
            if hasattr(storage, name):
                setattr(storage, name, phases.wrap("storage", getattr(storage, name)))
        for name in SAMPLER_METHODS:
            setattr(sampler, name, phases.wrap("sampler", getattr(sampler, name)))
        evaluate = phases.wrap("evaluate", evaluator.evaluate)
        slots_module.time = type("T", (), {"sleep": staticmethod(phases.wrap("wait", time.sleep)),
                                           "monotonic": staticmethod(time.monotonic)})
        slots = TrialSlots(study, int(cfg.search.n_trials))

        def objective(trial: optuna.Trial):  # run_study's, without the MLflow record
            choice = suggest(trial, space)
            if slots.surplus(trial):
                slots.give_way(trial)
            trial.set_user_attr(TRIAL_RUN_ATTR, f"run-of-trial-{trial.number}")
            trial.set_user_attr("machine", machine)
            metrics = evaluate(choice)
            violation = sla_violation_s(metric_value(metrics, "latency_p99_s"), cfg.trial.sla_s)
            trial.set_constraint(SLA_CONSTRAINT, violation)
            for name, value in metrics.items():
                trial.set_user_attr(name, value)
            return [metric_value(metrics, o.metric) for o in objectives]

        mine = []
        say(ready=True)
        assert sys.stdin.readline().strip() == "go"
        began, cpu = time.perf_counter(), time.process_time()
        if slots.wait():
            study.optimize(objective, catch=(), callbacks=[lambda s, t: mine.append(t.state.name),
                                                           slots.after_trial])
        wall = time.perf_counter() - began
        own = dict(phases.own)
        own["other"] = wall - sum(own.values())
        say(done=True, wall=wall, cpu=time.process_time() - cpu, trials=Counter(mine), own=own,
            calls=dict(phases.calls))
        previous = storage  # its connections stay open until the next job: the server's CPU is read meanwhile


# The coordinator ------------------------------------------------------------------------------------------------
class Pool:
    def __init__(self, size: int, folder: Path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
        self.workers = [subprocess.Popen([sys.executable, __file__, "--worker", str(i)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=open(folder / f"worker{i}.log", "w"),
                                         text=True, cwd=folder, env=env) for i in range(size)]

    def run(self, n: int, job: dict, servers=()) -> tuple[float, list[dict], float]:
        """Runs `job` on the first n workers from one go; returns the wall time, their reports and the CPU
        seconds that `servers` (callables giving their processes' CPU seconds so far) spent meanwhile."""
        used = self.workers[:n]
        for w in used:
            w.stdin.write(json.dumps(job) + "\n")
            w.stdin.flush()
        for w in used:
            assert json.loads(self._line(w)).get("ready")
        server_cpu = sum(cpu() for cpu in servers)
        go = time.perf_counter()
        for w in used:
            w.stdin.write("go\n")
            w.stdin.flush()
        reports = [json.loads(self._line(w)) for w in used]
        return time.perf_counter() - go, reports, sum(cpu() for cpu in servers) - server_cpu

    @staticmethod
    def _line(w) -> str:
        line = w.stdout.readline()
        if not line:
            raise RuntimeError(f"a bench worker ended (rc {w.wait()}): see its log in the bench folder")
        return line

    def close(self):
        for w in self.workers:
            w.stdin.close()
            w.wait(30)


def check(database: str, study: str, n: int) -> dict:
    """No completed trial lost or duplicated (study_workers.trial_ledger); returns the trial counts by state."""
    from study_workers import trial_ledger

    ledger = trial_ledger(database, n, study_name=study)
    assert not ledger["FAIL"], "no worker was killed: no trial may fail"
    return {state: len(trials) for state, trials in ledger.items() if state != "study" and trials}


def end_to_end(folder: Path, database_of, n_trials: int, workers: list[int]) -> list[dict]:
    """Real `python src/search.py` workers on PostgreSQL, MLflow record included (a SQLite store)."""
    import optuna

    from study_workers import prepare_store, start_worker

    base = overrides_for(folder)
    prepare_store(base)
    rows = []
    for w in workers:
        storage = database_of()
        overrides = [*base, f"search.storage={storage}", f"search.n_trials={n_trials}", "search.study_name=e2e"]
        procs = [start_worker(folder, [*overrides, f"search.seed={i}"], folder / f"e2e-{w}-{i}.log")
                 for i in range(w)]
        for i, p in enumerate(procs):
            if p.wait(1800) != 0:
                log = (folder / f"e2e-{w}-{i}.log").read_text()[-2000:]
                raise RuntimeError(f"an end-to-end worker failed: {log}")
        states = check(storage, "e2e", n_trials)
        trials = optuna.load_study(study_name="e2e", storage=storage).get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
        rows.append({"workers": w, "trials_per_s": n_trials / span, "states": states})
    return rows


def cpu_seconds(pid_of) -> callable:
    """CPU seconds used so far by a process and its children (the PostgreSQL server: its postmaster and one backend
    per connection; the proxy), read through psutil; `pid_of()` gives the parent's pid."""
    import psutil

    gone = {}

    def total() -> float:
        parent = psutil.Process(pid_of())
        for p in [parent, *parent.children(recursive=True)]:
            try:
                t = p.cpu_times()
                gone[p.pid] = t.user + t.system  # a backend that closed keeps what it used
            except psutil.NoSuchProcess:
                pass
        return sum(gone.values())

    return total


def cpu_line() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{model}, {len(os.sched_getaffinity(0))} cores available to this process, {os.cpu_count()} online"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=100, help="n_trials of each study (default 100)")
    parser.add_argument("--reps", type=int, default=3, help="studies per configuration, median reported")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--storages", nargs="+", choices=STORAGES, default=list(STORAGES))
    parser.add_argument("--end-to-end", action="store_true", help="also real src/search.py workers on PostgreSQL")
    parser.add_argument("--e2e-trials", type=int, default=40)
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args.worker)

    from postgres_server import start_postgres
    from study_workers import start_proxy, write_fake_profiles
    from sustainable_ipa.search.storage import make_storage

    folder = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    os.chmod(folder, 0o755)
    print(f"CPU: {cpu_line()}; load average at start {os.getloadavg()[0]:.2f}")
    began = time.monotonic()
    write_fake_profiles(overrides_for(folder))
    server = proxy = None
    pool = Pool(max(args.workers), folder)
    try:
        if {"postgresql", "grpc"} & set(args.storages) or args.end_to_end:
            server = start_postgres(folder / "postgres", durable=True)
        databases = {"sqlite": f"sqlite:///{folder}/optuna.db"}
        if "postgresql" in args.storages:
            databases["postgresql"] = server.new_database()
        addresses = dict(databases)
        if "grpc" in args.storages:
            databases["grpc"] = server.new_database()
            make_storage(databases["grpc"], heartbeat_s=None)  # its tables, before the proxy opens it
            proxy, addresses["grpc"] = start_proxy(folder, databases["grpc"])
        for storage in args.storages:
            make_storage(databases[storage], heartbeat_s=None)  # Optuna's tables exist before any timing
        servers = {"sqlite": []}
        if server is not None:
            postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
            servers["postgresql"] = [cpu_seconds(lambda: postmaster)]
            servers["grpc"] = servers["postgresql"] + ([cpu_seconds(lambda: proxy.pid)] if proxy else [])
        results = {}
        for rep in range(args.reps):
            for storage in args.storages:
                for w in args.workers:
                    name = f"{storage}-{w}w-{rep}"
                    wall, reports, server_cpu = pool.run(w, {"storage": addresses[storage], "study": name,
                                                             "n_trials": args.trials,
                                                             "overrides": overrides_for(folder)}, servers[storage])
                    states = check(databases[storage], name, args.trials)
                    results.setdefault((storage, w), []).append({"tps": args.trials / wall, "reports": reports,
                                                                  "states": states, "server_cpu": server_cpu})
                    print(f"  {name}: {args.trials / wall:7.1f} trials/s, servers {server_cpu:.2f} CPU s, {states}",
                          flush=True)
        e2e = end_to_end(folder, server.new_database, args.e2e_trials, args.workers) if args.end_to_end else []
    finally:
        pool.close()
        if proxy is not None:
            proxy.send_signal(signal.SIGTERM)
            proxy.wait(30)
        if server is not None:
            server.stop()
    report(results, e2e, args, time.monotonic() - began)
    shutil.rmtree(folder, ignore_errors=True)


def report(results: dict, e2e: list[dict], args, seconds: float) -> None:
    base = statistics.median(r["tps"] for r in results[(args.storages[0], args.workers[0])])
    print(f"\nTrials per second, median of {args.reps} studies of {args.trials} trials (min–max), ratio to "
          f"{args.storages[0]} × {args.workers[0]} worker and to the same storage × {args.workers[0]} worker; "
          f"surplus = trials that gave way (PRUNED, never evaluated), all studies together")
    print("(paired: the median over the repetitions of each one's ratio to the same repetition's run with "
          f"{args.workers[0]} worker, minutes apart, which cancels most of what other load on the machine does)")
    print(f"{'storage':<11}{'workers':>8}{'trials/s':>10}{'min–max':>15}{'× base':>8}{'× 1 worker':>12}"
          f"{'paired':>8}{'surplus':>9}")
    for (storage, w), runs in results.items():
        tps = [r["tps"] for r in runs]
        own = statistics.median(tps)
        ones = [r["tps"] for r in results[(storage, args.workers[0])]]
        paired = statistics.median(t / one for t, one in zip(tps, ones))
        surplus = sum(r["states"].get("PRUNED", 0) for r in runs)
        print(f"{storage:<11}{w:>8}{own:>10.1f}{f'{min(tps):.1f}–{max(tps):.1f}':>15}{own / base:>8.2f}"
              f"{own / statistics.median(ones):>12.2f}{paired:>8.2f}{surplus:>9}")
    print("\nWhere a worker's time goes, ms per completed trial (all workers and studies of the configuration "
          "together; sampler and storage exclude each other: storage calls made by the sampler count as storage)")
    print(f"{'storage':<11}{'workers':>8}" + "".join(f"{p:>10}" for p in PHASES) + f"{'calls/trial':>13}")
    for (storage, w), runs in results.items():
        reports = [rep for r in runs for rep in r["reports"]]
        complete = sum(rep["trials"].get("COMPLETE", 0) for rep in reports)
        own = Counter()
        for rep in reports:
            own.update(rep["own"])
        calls = sum(rep["calls"].get("storage", 0) for rep in reports)
        print(f"{storage:<11}{w:>8}" + "".join(f"{own[p] / complete * 1e3:>10.2f}" for p in PHASES) +
              f"{calls / complete:>13.1f}")
    cores = len(os.sched_getaffinity(0))
    print(f"\nCPU ms per completed trial: the workers' processes (heartbeat threads included), the database server "
          f"(PostgreSQL's processes, and the proxy's for grpc; SQLite runs inside the workers); the ceiling is "
          f"what {cores} cores "
          f"could do if nothing else ran: {cores} / (all CPU per trial)")
    print(f"{'storage':<11}{'workers':>8}{'workers':>10}{'servers':>10}{'ceiling':>10}")
    for (storage, w), runs in results.items():
        n = sum(rep["trials"].get("COMPLETE", 0) for r in runs for rep in r["reports"])
        worker_cpu = sum(rep["cpu"] for r in runs for rep in r["reports"]) / n
        server_cpu = sum(r["server_cpu"] for r in runs) / n
        print(f"{storage:<11}{w:>8}{worker_cpu * 1e3:>10.2f}{server_cpu * 1e3:>10.2f}"
              f"{cores / (worker_cpu + server_cpu):>10.1f}")
    if e2e:
        print(f"\nEnd to end: `python src/search.py` workers on PostgreSQL with their MLflow record (SQLite store), "
              f"{args.e2e_trials} trials, trials per second between the first trial's start and the last one's end")
        for row in e2e:
            print(f"  {row['workers']} worker(s): {row['trials_per_s']:.2f} trials/s  {row['states']}")
    print(f"\nCPU: {cpu_line()}; load average at the end {os.getloadavg()[0]:.2f}; {seconds:.0f} s in all")
    print("No completed trial lost or duplicated: every study held exactly n_trials COMPLETE trials with distinct "
          "numbers and run ids, and no other trial but surplus ones (checked on the database itself).")


if __name__ == "__main__":
    main()
