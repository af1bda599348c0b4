"""No signal leaves a run RUNNING: two signals milliseconds apart, a signal before any run, a process killed outright
(its runs ended KILLED by the next start), and `mlflow run` interrupted. The jobs are `signal_job.py`: the real
entry (`hydra_entry`) around a loop of tiny runs, started together so that the whole module takes seconds."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import runs_by_status, store_overrides
from sustainable_ipa.tracking import signals
from sustainable_ipa.tracking.runs import (OWNER_HOST, OWNER_PID, OWNER_STARTED, owner_tags, process_started,
                                          tracked_run)
from sustainable_ipa.tracking.store import open_store

JOB = Path(__file__).with_name("signal_job.py")
SIGINT, SIGTERM, SIGKILL = signal.SIGINT, signal.SIGTERM, signal.SIGKILL
# (first signal, second signal, seconds between them); the first lands at a random moment of the loop of runs
BURSTS = [(SIGINT, SIGINT, 0.0), (SIGINT, SIGINT, 0.005), (SIGINT, SIGINT, 0.02), (SIGINT, SIGINT, 0.1),
          (SIGINT, SIGTERM, 0.005), (SIGTERM, SIGINT, 0.02)]
REPEATS = int(os.environ.get("SIGNAL_TEST_REPEATS", "1"))  # more for a stress run: all jobs start at once


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """A store with MLflow's schema made once: each job copies it rather than migrating its own (seconds each)."""
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


def store_copy(folder: Path, empty_store: Path) -> MlflowClient:
    (folder / "mlruns").mkdir(parents=True)
    shutil.copy(empty_store, folder / "mlruns" / "mlflow.db")
    return MlflowClient(tracking_uri=f"sqlite:///{folder}/mlruns/mlflow.db")


def start_job(folder: Path, empty_store: Path, **env) -> subprocess.Popen:
    store_copy(folder, empty_store)
    return subprocess.Popen([sys.executable, str(JOB), *store_overrides(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=folder, env={**os.environ, **env})


def signal_when_ready(proc: subprocess.Popen, signals_and_gaps: list, seed: int) -> None:
    """After the job prints `ready`: a random pause (to land anywhere in the loop), then each signal after its gap."""
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(random.Random(seed).uniform(0.02, 0.3))
    for signum, gap_s in signals_and_gaps:
        time.sleep(gap_s)
        proc.send_signal(signum)


def test_no_signal_at_any_moment_leaves_a_run_running(tmp_path, empty_store):
    cases = [(f"{first.name}+{second.name} {gap * 1000:.0f} ms", tmp_path / f"job{i}", [(first, 0), (second, gap)])
             for i, (first, second, gap) in enumerate(BURSTS * REPEATS)]
    jobs = [(name, folder, plan, start_job(folder, empty_store)) for name, folder, plan in cases]
    before_any_run = start_job(tmp_path / "idle", empty_store, SIGNAL_JOB_IDLE="1")
    killed = start_job(tmp_path / "killed", empty_store)
    senders = [threading.Thread(target=signal_when_ready, args=(proc, plan, i))
               for i, (_, _, plan, proc) in enumerate(jobs)]
    senders.append(threading.Thread(target=signal_when_ready, args=(before_any_run, [(SIGINT, 0), (SIGINT, 0.005)], 0)))
    senders.append(threading.Thread(target=signal_when_ready, args=(killed, [(SIGKILL, 0)], 0)))
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=90)

    for name, folder, plan, proc in jobs:
        _, stderr = proc.communicate(timeout=60)
        client = MlflowClient(tracking_uri=f"sqlite:///{folder}/mlruns/mlflow.db")
        # the exit code and the word follow the first signal handled: two pending at once are handled SIGINT first
        assert proc.returncode in {signals.EXIT_CODES[signum] for signum, _ in plan}, (name, stderr[-2000:])
        assert not runs_by_status(client, "RUNNING"), name
        last = stderr.strip().splitlines()[-1]
        ended = re.fullmatch(r"error: (interrupted|terminated): the open MLflow runs were ended KILLED \((\d+)\)", last)
        assert ended, (name, last)  # and true: as many runs KILLED as it says
        assert ended.group(1) == ("interrupted" if proc.returncode == 130 else "terminated"), name
        assert int(ended.group(2)) == len(runs_by_status(client, "KILLED")) >= 1, name

    _, stderr = before_any_run.communicate(timeout=60)
    assert before_any_run.returncode == 130
    assert stderr.strip().splitlines()[-1] == "error: interrupted (no MLflow run was open)"

    # SIGKILL: no clean-up at all. The next start in the experiment (open_store, in every entry point) ends its runs.
    killed.communicate(timeout=60)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/killed/mlruns/mlflow.db")
    left = {r.info.run_id for r in runs_by_status(client, "RUNNING")}
    assert left  # the job and the repetition in progress
    open_store(f"sqlite:///{tmp_path}/killed/mlruns/mlflow.db", "sustainable-ipa", str(tmp_path / "killed"))
    assert not runs_by_status(client, "RUNNING")
    assert left <= {r.info.run_id for r in runs_by_status(client, "KILLED")}


def test_the_next_start_ends_only_the_runs_of_owners_gone(tmp_path, empty_store, capsys):
    client = store_copy(tmp_path, empty_store)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    experiment_id = open_store(uri, "sustainable-ipa", None)
    gone = subprocess.Popen(["sleep", "30"])
    gone_owner = {OWNER_HOST: socket.gethostname(), OWNER_PID: str(gone.pid), OWNER_STARTED: process_started(gone.pid)}
    gone.kill()
    gone.wait()
    me = owner_tags()

    def running(owner: dict, parent: str | None = None) -> str:
        tags = {**owner, **({"mlflow.parentRunId": parent} if parent else {})}
        return client.create_run(experiment_id, tags=tags).info.run_id

    dead = running(gone_owner)
    dead_child = running(gone_owner, parent=dead)
    live_child = running(me, parent=dead)  # nested under a dead run, but its own process still runs
    alive = running(me)
    boot, namespace, tick = me[OWNER_STARTED].split(":")
    reused = running({**me, OWNER_STARTED: f"{boot}:{namespace}:{int(tick) - 1}"})  # this pid, another process then
    earlier_boot = running({**me, OWNER_STARTED: f"an-earlier-boot:{namespace}:{tick}"})
    container = running({**me, OWNER_STARTED: f"{boot}:1:{tick}"})  # another pid namespace: its pids are not ours
    elsewhere = running({**gone_owner, OWNER_HOST: "another-host"})  # no way to know from here
    unowned = running({})
    open_store(uri, "sustainable-ipa", None)
    status = {run_id: client.get_run(run_id).info.status for run_id in
              (dead, dead_child, live_child, alive, reused, earlier_boot, container, elsewhere, unowned)}
    assert status == {dead: "KILLED", dead_child: "KILLED", reused: "KILLED", earlier_boot: "KILLED",
                      live_child: "RUNNING", alive: "RUNNING", container: "RUNNING", elsewhere: "RUNNING",
                      unowned: "RUNNING"}
    warnings = capsys.readouterr().err
    assert f"process {gone.pid} of this host" in warnings and dead in warnings


def test_a_run_records_its_owner(tmp_path, empty_store):
    client = store_copy(tmp_path, empty_store)
    experiment_id = open_store(f"sqlite:///{tmp_path}/mlruns/mlflow.db", "sustainable-ipa", None)
    with tracked_run(client, experiment_id, "owned") as run_id:
        tags = client.get_run(run_id).data.tags
    assert tags[OWNER_HOST] == socket.gethostname() and tags[OWNER_PID] == str(os.getpid())
    assert tags[OWNER_STARTED] == process_started(os.getpid()) is not None


@pytest.fixture
def stop_handlers(monkeypatch):
    """The entry points' handlers in this process, as before any signal; pytest's own put back afterwards."""
    for name, value in {"_depth": 0, "_stopping_since": None, "_held": [], "_first": None}.items():
        monkeypatch.setattr(signals, name, value)
    saved = {signum: signal.getsignal(signum) for signum in signals.STOP_SIGNALS}
    signals.install_stop_handlers()
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def let_handlers_run() -> None:
    for _ in range(1000):  # Python runs a signal's handler between bytecodes: many chances to interrupt
        pass


def test_a_held_signal_waits_for_the_block_then_no_later_one_interrupts_the_stop(stop_handlers):
    done = []
    with pytest.raises(signals.Terminated):
        with signals.signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)  # the first held is the one raised
            let_handlers_run()
            done.append("block")
    assert done == ["block"]
    os.kill(os.getpid(), signal.SIGINT)  # stopping: noted, not raised
    let_handlers_run()
    assert signals.first_signal(KeyboardInterrupt()) == signal.SIGTERM


def test_a_signal_outside_a_hold_raises_at_once(stop_handlers):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        let_handlers_run()


def test_interrupted_mlflow_run_ends_its_run_killed(tmp_path, empty_store):
    """Ctrl-C in a terminal signals the whole foreground group: `mlflow run` and the job it started."""
    client = store_copy(tmp_path, empty_store)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    experiment_id = client.create_experiment("mlflow-run-test", artifact_location=(tmp_path / "artifacts").as_uri())
    project = tmp_path / "project"
    project.mkdir()
    (project / "MLproject").write_text(
        "name: signal-job\nentry_points:\n  main:\n    parameters:\n      hydra_options: {type: string, default: ''}\n"
        f"    command: \"python {JOB} $(echo {{hydra_options}})\"\n")
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
    options = " ".join([*store_overrides(tmp_path), "tracking.experiment=mlflow-run-test"])
    proc = subprocess.Popen([str(venv_bin / "mlflow"), "run", str(project), "--env-manager", "local",
                             "--experiment-name", "mlflow-run-test", "-P", f"hydra_options={options}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "the open MLflow runs were ended KILLED" in stderr
    [outer] = client.search_runs([experiment_id], filter_string="tags.mlflow.parentRunId IS NULL")
    deadline = time.time() + 20  # `mlflow run` wrote FAILED as it exited; the job's helper sets KILLED again
    while client.get_run(outer.info.run_id).info.status != "KILLED" and time.time() < deadline:
        time.sleep(0.2)
    assert client.get_run(outer.info.run_id).info.status == "KILLED"
    assert not runs_by_status(client, "RUNNING")
