"""Stage isolation, measured inside the workers: thread counts, cores, CPU time, weights, and no process outliving
its runner (after an error, SIGTERM, Ctrl-C or the parent's death)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from sustainable_ipa.pipeline.replicas import WorkerDied
from sustainable_ipa.pipeline.runner import StageRunner
from sustainable_ipa.pipeline.stage import ItemResult, StageSettings, StageSpec
from test_runner import gone

SRC = Path(__file__).resolve().parents[2] / "src"


class Matmuls:
    """`n` products of 384 × 384 matrices per item (torch splits each over its intra-op threads); each item's output
    is torch's thread count as the worker sees it during the batch. Hands each item on `hand_on` times."""

    def __init__(self, n: int, hand_on: int = 0):
        self.n, self.hand_on = n, hand_on

    def __call__(self, batch: list) -> list[ItemResult]:
        a = torch.rand(384, 384)
        for _ in range(self.n * len(batch)):
            a = torch.tanh(a @ a)
        return [ItemResult(torch.get_num_threads(), [item] * self.hand_on) for item in batch]


class Sleeps:
    """Sleeps `s` per batch: a stage that takes a while and uses no CPU."""

    def __init__(self, s: float, hand_on: int = 0):
        self.s, self.hand_on = s, hand_on

    def __call__(self, batch: list) -> list[ItemResult]:
        time.sleep(self.s)
        return [ItemResult(None, [item] * self.hand_on) for item in batch]


class Dies:
    """A worker that ends in the middle of a batch, as a crash in native code would."""

    def __call__(self, batch: list) -> list[ItemResult]:
        os._exit(3)


class StateDigest:
    """Each item's output: a digest of the model's weights and buffers as the worker holds them."""

    def __init__(self, model: torch.nn.Module, hand_on: int = 0):
        self.model, self.hand_on = model, hand_on

    def __call__(self, batch: list) -> list[ItemResult]:
        return [ItemResult(state_digest(self.model), [item] * self.hand_on) for item in batch]


def state_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def test_each_stage_runs_its_own_thread_count_beside_the_other():
    """2 threads beside 1, on 2 cores: the 2-thread stage's cores overlap its neighbour's (3 threads asked of 2
    cores, which only the config's core budget refuses), so both contend, and each still runs its own count."""
    stages = [StageSpec("two", Matmuls(6, hand_on=1), StageSettings(2, 2, 1)),
              StageSpec("one", Matmuls(6), StageSettings(2, 1, 1))]
    with StageRunner(stages, cores=sorted(os.sched_getaffinity(0))[:2]) as runner:
        result = runner.run(list(range(8)), np.zeros(8))
    two, one = result.replicas
    assert [r.outputs["two"] for r in result.requests] == [[2]] * 8  # torch's count inside the worker, per batch
    assert [r.outputs["one"] for r in result.requests] == [[1]] * 8
    assert (two.torch_threads, one.torch_threads) == (2, 1)
    # the OS threads that did work in each worker, counted from /proc: torch's pool is as big as asked, no bigger
    assert (two.busy_threads, one.busy_threads) == (2, 1)
    assert len(two.cores) == min(2, len(os.sched_getaffinity(0))) and len(one.cores) == 1
    assert two.pid != one.pid


def test_stage_cpu_time_is_measured_not_configured():
    """Same threads, three times the work: three times the CPU seconds (threads × wall would not see it)."""
    # enough work (~0.5 s and ~0.17 s of CPU) that a worker's fixed costs (start, messages) do not blur the ratio
    stages = [StageSpec("heavy", Matmuls(30, hand_on=1), StageSettings(2, 1, 1)),
              StageSpec("light", Matmuls(10), StageSettings(2, 1, 1))]
    with StageRunner(stages) as runner:
        result = runner.run(list(range(8)), np.zeros(8))
    cpu = result.stage_cpu_s()
    assert set(cpu) == {"heavy", "light"} and cpu["light"] > 0
    assert 2.0 < cpu["heavy"] / cpu["light"] < 4.5
    per_batch = sum(b.cpu_s for b in result.batches if b.stage == "heavy")
    assert 0 < per_batch <= cpu["heavy"] + 0.02  # the run's total holds every batch (and the time between them)


def test_a_worker_that_dies_is_one_error_and_its_neighbours_end():
    runner = StageRunner([StageSpec("a", Sleeps(0.05, hand_on=1), StageSettings(1, 1, 1)),
                          StageSpec("b", Dies(), StageSettings(1, 1, 1))])
    runner.start()
    pids = runner.replicas.pids()
    with pytest.raises(WorkerDied, match=r"stage 'b' replica 0 \(pid \d+\) ended unexpectedly \(exit code 3\)"):
        runner.run(list(range(4)), np.zeros(4))
    assert gone(pids)


def test_a_stage_that_cannot_leave_the_process_says_so():
    def classify(batch):
        return [ItemResult(len(batch))] * len(batch)

    with pytest.raises(TypeError, match="stage 'local' cannot go to a worker process .* isolation='threads'"):
        StageRunner([StageSpec("local", classify, StageSettings(1, 1, 1))]).run([1], np.zeros(1))
    result = StageRunner([StageSpec("local", classify, StageSettings(1, 1, 1))], isolation="threads").run(
        [1], np.zeros(1))
    assert result.requests[0].outputs == {"local": [1]}


def test_the_energy_estimate_counts_the_workers_cpu_time():
    from sustainable_ipa.energy.estimate import process_tree_cpu_s

    with StageRunner([StageSpec("work", Matmuls(40), StageSettings(2, 1, 1))]) as runner:
        runner.start()
        tree_s, own_s = process_tree_cpu_s(), time.process_time()
        result = runner.run(list(range(8)), np.zeros(8))
        tree_s, own_s = process_tree_cpu_s() - tree_s, time.process_time() - own_s
    assert result.stage_cpu_s()["work"] > 0.2
    assert tree_s >= own_s + result.stage_cpu_s()["work"] - 0.05  # clock ticks of 10 ms per process


@pytest.mark.slow
def test_real_stages_give_the_same_outputs_in_workers_with_the_parents_weights():
    from sustainable_ipa.config import compose
    from sustainable_ipa.data import load_dataset
    from sustainable_ipa.families.resnet import Classifier
    from sustainable_ipa.families.yolov5 import Detector
    from test_runner import crop_classes, video_runner

    frames = load_dataset(compose([]).dataset).frames * 2
    torch.manual_seed(0)
    detector, classifier = Detector("yolov5n", None), Classifier("resnet18", None)
    with StageRunner([StageSpec("detector", StateDigest(detector.model, hand_on=1), StageSettings(1, 1, 1)),
                      StageSpec("classifier", StateDigest(classifier.model), StageSettings(1, 1, 1))]) as runner:
        digests = runner.run(frames[:1], np.zeros(1)).requests[0].outputs
    assert digests == {"detector": [state_digest(detector.model)], "classifier": [state_digest(classifier.model)]}

    outputs = {}
    for isolation in ("threads", "processes"):
        with video_runner(detector, classifier, StageSettings(2, 1, 1), StageSettings(4, 1, 1),
                          crops_from_ground_truth=True, isolation=isolation) as runner:
            result = runner.run(frames, np.zeros(len(frames)))
        outputs[isolation] = [(r.outputs["detector"][0].tolist(), crop_classes(r)) for r in result.requests]
    assert outputs["processes"] == outputs["threads"]
    assert sum(len(classes) for _, classes in outputs["processes"]) == 2 * sum(len(f.ground_truth) for f in frames[:2])


SIGNALLED = """
import os, signal, sys
import numpy as np
sys.path[:0] = [{src!r}, {tests!r}, {tests_root!r}]
from sustainable_ipa.pipeline import replicas
from sustainable_ipa.pipeline.runner import StageRunner
from sustainable_ipa.pipeline.stage import StageSettings, StageSpec
from test_isolation import Sleeps

replicas.PRELOAD = ["torch", "numpy", "test_isolation"]  # these stages need no models

class Terminated(BaseException):
    pass

def terminate(signum, frame):
    raise Terminated()  # as the entry points do

if sys.argv[1] == "handled":
    signal.signal(signal.SIGTERM, terminate)
runner = StageRunner([StageSpec("a", Sleeps(0.2, hand_on=1), StageSettings(1, 1, 1)),
                      StageSpec("b", Sleeps(0.2), StageSettings(1, 1, 1))])
runner.start()
print(*runner.replicas.pids(), flush=True)
runner.run(list(range(1000)), np.zeros(1000))
"""


def descendants_alive(token: str) -> list[int]:
    """Processes whose environment carries `token`: the script and all it started (forkserver, workers)."""
    alive = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and token.encode() in Path(f"/proc/{entry}/environ").read_bytes():
                alive.append(int(entry))
        except OSError:
            continue
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "ctrl-c", "sigkill"])
def test_no_worker_outlives_a_signalled_runner(how):
    """SIGTERM handled as the entry points do, Ctrl-C (SIGINT to the whole process group, as a terminal sends it)
    and SIGKILL (no cleanup at all: the workers notice the closed pipe): every process the run started ends."""
    token = f"SIPA_TEST_{uuid.uuid4().hex}"
    script = SIGNALLED.format(src=str(SRC), tests=str(Path(__file__).parent), tests_root=str(Path(__file__).parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", script, "handled" if how == "sigterm" else "plain"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, token: "1"})
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2, proc.stderr.read()
        time.sleep(1.0)  # the run is under way: both workers busy or waiting on a batch
        assert all(Path(f"/proc/{p}").exists() for p in pids)
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        elif how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while descendants_alive(token) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not descendants_alive(token), f"left running after {how}"
        if how != "sigkill":
            assert ("Terminated" if how == "sigterm" else "KeyboardInterrupt") in proc.stderr.read()
    finally:
        for pid in descendants_alive(token):
            os.kill(pid, signal.SIGKILL)
