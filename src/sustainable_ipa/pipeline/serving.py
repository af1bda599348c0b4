"""A pipeline configuration as a service: requests are submitted while it runs, and it hands over to the next.

`StageRunner.run` serves a list of requests known in advance and ends when they are done. A live loop instead
submits requests as they arrive (`submit`) and changes configuration while requests are in flight. Without losing
one: the next configuration's workers are started, loaded and warmed (`start`: one batch through every replica)
while the current one still serves; then the current one takes no more requests and hands every item no replica
has begun, at every stage, to the same stage of the next one (`hand_over`: arrival times kept), and the items its
batches in flight hand on go there too; the next one takes every new request. The current one is drained once its
batches in flight are done (`wait_drained`): that span, when both configurations share the cores, is the switch's
degraded service. At the end, `close_intake` flushes the partial batches, as at the end of a run.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

from sustainable_ipa.pipeline.batching import BatchQueue
from sustainable_ipa.pipeline.replicas import ReplicaReport, StageReplicas
from sustainable_ipa.pipeline.runner import BatchTiming, RequestRecord, serve_batch
from sustainable_ipa.pipeline.stage import StageSpec


class ServingPipeline:
    """One configuration serving requests until it hands over (or its intake is closed) and has drained."""

    def __init__(self, stages: Sequence[StageSpec], cores: Sequence[int] | None = None,
                 on_request_done: Callable[[RequestRecord], None] | None = None):
        self.stages = list(stages)
        self.replicas = StageReplicas(self.stages, "processes", cores)
        self.on_request_done = on_request_done
        self.batches: list[BatchTiming] = []
        self.reports: list[ReplicaReport] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._queues: list[BatchQueue] = [BatchQueue() for _ in self.stages]
        self._targets = self._queues  # where items for each stage go: these, or the successor's after a handover
        self._threads: list[threading.Thread] = []
        self._live = [spec.settings.replicas for spec in self.stages]
        self._intake_closed = False
        self.batch_sizes = [spec.settings.batch_size for spec in self.stages]  # `set_batch_sizes` changes them

    def start(self, warm_items: list) -> float:
        """Start the workers, run `warm_items` (first-stage items) through every replica of every stage, and begin
        serving. Returns the seconds it took. Nothing it warms is recorded."""
        began = time.perf_counter()
        self.replicas.start()
        items = list(warm_items)
        for k, spec in enumerate(self.stages):
            handed = []
            for replica in self.replicas.by_stage[k]:
                results = replica.process_batch(items[:max(spec.settings.batch_size, 1)])[0] if items else []
                handed = [h for r in results for h in r.handoffs]
            items = handed
        for k, stage_replicas in enumerate(self.replicas.by_stage):
            for replica in stage_replicas:
                replica.begin_run()  # CPU counters and the input cache from here on
                thread = threading.Thread(target=self._guarded(self._serve, k, replica), daemon=True,
                                          name=f"serve-{self.stages[k].name}-{replica.index}")
                thread.start()
                self._threads.append(thread)
        return time.perf_counter() - began

    def submit(self, request: RequestRecord) -> None:
        """`request` arrives now: its first-stage item joins the queue."""
        if self._intake_closed:
            raise RuntimeError("this configuration no longer takes requests")
        request.arrival_s, request.pending = time.perf_counter(), 1
        self._queues[0].put_many([(request, request.item)])

    def set_batch_sizes(self, sizes: Sequence[int]) -> None:
        """Switch in place: the same workers cut their next batches (the one filling now included) at `sizes`. A
        batch size is the parent's business (the queues'), so nothing is started or moved."""
        if len(sizes) != len(self.stages) or any(int(b) < 1 for b in sizes):
            raise ValueError(f"one batch size >= 1 per stage ({len(self.stages)}), not {list(sizes)}")
        self.batch_sizes = [int(b) for b in sizes]

    def hand_over(self, successor: "ServingPipeline") -> int:
        """Take no more requests; every item queued here that no replica has begun, at any stage, moves to the
        same stage of `successor` (arrival times kept), and so do the items the batches in flight here hand on.
        Returns how many items moved."""
        self._intake_closed = True
        with self._lock:  # no batch here hands on to the old queues after this
            self._targets = successor._queues
        moved = 0
        for own, theirs in zip(self._queues, successor._queues):
            items = own.close_and_take_all()
            theirs.put_many(items)
            moved += len(items)
        return moved

    def close_intake(self) -> None:
        """Take no more requests; the partial batches left are served as they are, stage after stage."""
        self._intake_closed = True
        self._queues[0].close()

    def wait_drained(self, timeout_s: float | None = None) -> bool:
        """Wait until every batch begun here is done (after `hand_over` or `close_intake`); a stage's error is
        raised here."""
        ended = time.monotonic() + timeout_s if timeout_s is not None else None
        for thread in self._threads:
            while thread.is_alive():
                thread.join(timeout=0.05)
                if self.errors:
                    raise self.errors[0]
                if ended is not None and time.monotonic() > ended:
                    return False
        if self.errors:
            raise self.errors[0]
        return True

    def close(self) -> None:
        """End the workers (whatever is still in flight is abandoned: drain first)."""
        self._stop.set()
        self.replicas.close()
        for thread in self._threads:
            thread.join(timeout=10)

    def _guarded(self, work, *args):
        def target() -> None:
            try:
                work(*args)
            except BaseException as err:  # raised by wait_drained in the loop's thread
                with self._lock:
                    self.errors.append(err)
                self._stop.set()
        return target

    def _serve(self, k: int, replica) -> None:
        spec, last_stage = self.stages[k], k + 1 == len(self.stages)
        try:
            while (batch := self._queues[k].take(lambda: self.batch_sizes[k], self._stop)) is not None:
                handoffs, done = serve_batch(spec, replica, batch, last_stage, self.batches, self._lock)
                if handoffs:
                    with self._lock:  # here, or to the successor once handed over (`hand_over`)
                        self._targets[k + 1].put_many(handoffs)
                for request in done:
                    if self.on_request_done is not None:
                        self.on_request_done(request)
            if not self._stop.is_set():
                report = replica.end_run()
                with self._lock:
                    self.reports.append(report)
        finally:
            with self._lock:
                self._live[k] -= 1
                stage_done = self._live[k] == 0
            if stage_done and not last_stage:
                self._queues[k + 1].close()
