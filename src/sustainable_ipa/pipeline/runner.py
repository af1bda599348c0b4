"""Moves requests through a pipeline's stages with batching, replicas and per-request timestamps.

Each replica runs in a worker process on cores of its own with its stage's torch thread count (`replicas.py`); the
parent keeps the batch queues, one dispatching thread per replica and every request's record.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from sustainable_ipa.pipeline.batching import BatchQueue
from sustainable_ipa.pipeline.replicas import ReplicaReport, StageReplicas
from sustainable_ipa.pipeline.stage import StageSettings, StageSpec

__all__ = ["BatchTiming", "ReplicaReport", "RequestRecord", "StageRunner", "StageSettings", "StageSpec", "TrialResult"]


@dataclass
class RequestRecord:
    request_id: int
    item: object = field(repr=False)  # the request's input: the first stage's item (a frame, a clip, a text)
    arrival_s: float = float("nan")
    finish_s: float = float("nan")
    outputs: dict[str, list] = field(default_factory=dict, repr=False)  # per stage, its items' outputs
    stage_end_s: dict[str, float] = field(default_factory=dict)  # per stage, when its last item of the request was back
    pending: int = 0  # items of this request still in some stage

    @property
    def latency_s(self) -> float:
        return self.finish_s - self.arrival_s


@dataclass(frozen=True)
class BatchTiming:
    stage: str
    size: int
    start_s: float
    end_s: float
    threads: int = 1  # configured
    cpu_s: float = float("nan")  # CPU time the worker process used on the batch, as the OS counts it
    replica: int = 0

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def core_s(self) -> float:
        """Configured threads × wall time: what a stage's share could only be apportioned by without isolation."""
        return self.duration_s * self.threads


@dataclass
class TrialResult:
    requests: list[RequestRecord]
    batches: list[BatchTiming]
    start_s: float
    end_s: float
    replicas: list[ReplicaReport] = field(default_factory=list)  # measured in each worker; none with threads
    stages: list[str] = field(default_factory=list)  # the pipeline's stages in order

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def stage_cpu_s(self) -> dict[str, float]:
        """CPU seconds (core-seconds) each stage's worker processes used over the run, measured by the OS: batches,
        and the threads' spinning between them. Empty for a run on replica threads, which the OS cannot tell apart."""
        out: dict[str, float] = {}
        for r in self.replicas:
            out[r.stage] = out.get(r.stage, 0.0) + r.cpu_s
        return out

    def stage_core_s(self) -> dict[str, float]:
        """Configured threads × batch wall time per stage: an apportioning key, not a measurement."""
        out: dict[str, float] = {}
        for b in self.batches:
            out[b.stage] = out.get(b.stage, 0.0) + b.core_s
        return out


def serve_batch(spec: StageSpec, replica, batch: list[tuple[RequestRecord, object]], last_stage: bool,
                batches: list[BatchTiming], lock: threading.Lock) -> tuple[list, list[RequestRecord]]:
    """One batch through `replica`, recorded: its timing appended to `batches`, each item's output on its request.
    Returns what the next stage gets, (request, item) pairs, and the requests this batch finished."""
    results, began, ended, cpu_s = replica.process_batch([item for _, item in batch])
    if len(results) != len(batch):
        raise RuntimeError(f"stage {spec.name!r} returned {len(results)} results for a batch of {len(batch)}")
    now = time.perf_counter()
    handoffs, done = [], []
    with lock:
        batches.append(BatchTiming(spec.name, len(batch), began, ended, spec.settings.threads, cpu_s, replica.index))
        for (request, _), result in zip(batch, results):
            request.outputs.setdefault(spec.name, []).append(result.output)
            request.stage_end_s[spec.name] = now
            handed = [] if last_stage else list(result.handoffs)
            handoffs.extend((request, h) for h in handed)
            request.pending += len(handed) - 1
            if request.pending == 0:
                request.finish_s = now
                done.append(request)
    return handoffs, done


class StageRunner:
    """Runs trials through `stages` in order: a stage's items are cut into batches of its `batch_size` as they come
    (the last one partial), taken by whichever of its replicas is free; what an item hands on joins the next stage's
    queue; a request is done when none of its items is left in any stage.

    `isolation="processes"` (default): every replica a worker process on `threads` cores of its own out of `cores`
    (default: this process's CPU affinity); workers start at `start()` or the first run and last until `close()`.
    `isolation="threads"`: replicas are threads of this process (torch's thread count is then shared by all).
    """

    def __init__(self, stages: Sequence[StageSpec], isolation: str = "processes", cores: Sequence[int] | None = None):
        self.stages = list(stages)
        self.replicas = StageReplicas(self.stages, isolation, cores)

    @property
    def isolation(self) -> str:
        return self.replicas.isolation

    def start(self) -> None:
        """Start the workers and wait until each has its stage loaded (a no-op once started, or with threads)."""
        self.replicas.start()

    def close(self) -> None:
        """End the workers (terminated, then waited for). A later run starts new ones."""
        self.replicas.close()

    def __enter__(self) -> StageRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, items: list, arrival_offsets_s: np.ndarray,
            on_request_done: Callable[[RequestRecord], None] | None = None) -> TrialResult:
        """One trial: request i brings `items[i]` to the first stage at `arrival_offsets_s[i]` (all at the start
        when every offset is 0). An error in a stage, Ctrl-C or SIGTERM ends the workers and is raised here."""
        self.start()
        trial = _Trial(self.stages, [RequestRecord(i, item) for i, item in enumerate(items)], on_request_done)
        workers = [threading.Thread(target=trial.guarded(lambda: trial.feed(arrival_offsets_s)), name="feeder",
                                    daemon=True)]
        workers += [threading.Thread(target=trial.guarded(lambda k=k, replica=replica: trial.serve(k, replica)),
                                     name=f"{self.stages[k].name}-{replica.index}", daemon=True)
                    for k, stage_replicas in enumerate(self.replicas.by_stage) for replica in stage_replicas]
        start = time.perf_counter()
        self._run_to_the_end(workers, trial)
        end = time.perf_counter()
        names = [s.name for s in self.stages]
        return TrialResult(trial.requests, sorted(trial.batches, key=lambda b: b.start_s), start, end,
                           sorted(trial.reports, key=lambda r: (names.index(r.stage), r.index)), names)

    def _run_to_the_end(self, workers: list[threading.Thread], trial: _Trial) -> None:
        """Start the threads and wait for them all; on an error in one of them, Ctrl-C or SIGTERM, end the workers
        and raise it."""
        try:
            for worker in workers:
                worker.start()
            for worker in workers:
                while worker.is_alive():  # short joins keep Ctrl-C and SIGTERM responsive
                    worker.join(timeout=0.1)
        except BaseException:
            trial.stop.set()
            self.close()  # a dispatching thread waiting on its worker returns once the worker is gone
            for worker in workers:
                worker.join(timeout=30)
            raise
        if trial.errors:
            trial.stop.set()
            self.close()
            raise trial.errors[0]


class _Trial:
    """What the threads of one `StageRunner.run` share: the requests, a batch queue per stage, the batches and
    replica reports recorded, the first errors, and how many replicas of each stage are still serving."""

    def __init__(self, stages: list[StageSpec], requests: list[RequestRecord],
                 on_request_done: Callable[[RequestRecord], None] | None):
        self.stages = stages
        self.requests = requests
        self.on_request_done = on_request_done
        self.queues: list[BatchQueue[tuple[RequestRecord, object]]] = [BatchQueue() for _ in stages]
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.batches: list[BatchTiming] = []
        self.reports: list[ReplicaReport] = []
        self.lock = threading.Lock()
        self.live = [spec.settings.replicas for spec in stages]

    def guarded(self, work: Callable[[], None]) -> Callable[[], None]:
        """`work` as a thread's target: an error it raises is kept and stops the other threads."""
        def target() -> None:
            try:
                work()
            except BaseException as err:  # raised in the caller's thread once the others have stopped
                with self.lock:
                    self.errors.append(err)
                self.stop.set()
        return target

    def feed(self, arrival_offsets_s: np.ndarray) -> None:
        """The requests into the first stage's queue at their arrival times, then the queue closed."""
        queue, requests = self.queues[0], self.requests
        start = time.perf_counter()
        if not np.any(arrival_offsets_s):
            for request in requests:
                request.arrival_s, request.pending = start, 1
            queue.put_many([(r, r.item) for r in requests])
        else:
            for request, offset in zip(requests, arrival_offsets_s):
                delay = start + offset - time.perf_counter()
                if delay > 0 and self.stop.wait(delay):
                    break
                request.arrival_s, request.pending = time.perf_counter(), 1
                queue.put_many([(request, request.item)])
        queue.close()

    def serve(self, k: int, replica) -> None:
        """Stage k's batches through `replica` until its queue closes; the last of its replicas to end closes the
        next stage's queue."""
        spec, last_stage = self.stages[k], k + 1 == len(self.stages)
        try:
            replica.begin_run()
            while (batch := self.queues[k].take(spec.settings.batch_size, self.stop)) is not None:
                handoffs, done = serve_batch(spec, replica, batch, last_stage, self.batches, self.lock)
                if handoffs:
                    self.queues[k + 1].put_many(handoffs)
                if self.on_request_done is not None:
                    for request in done:
                        self.on_request_done(request)
            report = replica.end_run()
            if report is not None:
                with self.lock:
                    self.reports.append(report)
        finally:
            with self.lock:
                self.live[k] -= 1
                stage_done = self.live[k] == 0
            if stage_done and not last_stage:
                self.queues[k + 1].close()
