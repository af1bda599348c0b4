"""The configuration serving live, as a small state machine: serving, preparing the next one, draining the last one.

    SERVING    --a decision that changes batch sizes alone-->  SERVING    (in place: the same workers' queues cut
                                                                           their next batches at the new sizes)
    SERVING    --a decision that needs new workers-->          PREPARING  (the next one started, loaded and warmed
                                                                           in its own thread; the current one serves)
    PREPARING  --the next one ready-->                         DRAINING   (handover: it takes the arrivals and every
                                                                           queued item no replica has begun)
    DRAINING   --the last one's batches in flight done-->      SERVING    (the last one ended, the switch recorded)
    PREPARING, DRAINING --another decision-->                  unchanged  (deferred: decided again next interval)
    PREPARING  --the loop stopped (an error, a signal)-->      SERVING    (what was prepared closed, never served)

A decision for the configuration that takes the arrivals changes nothing, in any state. The switch runs in its own
thread so that the intervals keep their clock; the loop's thread decides, the feeder's submits, and one lock orders
a handover against the arrivals: no request reaches a configuration that is handing over. An error in the switch's
thread is kept and raised in the loop's (`raise_error`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from sustainable_ipa.adapt.switching import IN_PLACE, NEW_WORKERS, NO_SWITCH, only_batch_sizes
from sustainable_ipa.metrics.energy import active_energy_j
from sustainable_ipa.pipeline.runner import RequestRecord
from sustainable_ipa.search.space import PipelineChoice

DEFERRED = "deferred"  # a decision to switch while the switch before is under way


class Phase(Enum):
    SERVING = "serving"
    PREPARING = "preparing"
    DRAINING = "draining"


def next_step(phase: Phase, active: PipelineChoice, decided: PipelineChoice | None) -> str:
    """What a decision does to the configuration serving `active`: NO_SWITCH, DEFERRED, IN_PLACE or NEW_WORKERS."""
    if decided is None or decided == active:
        return NO_SWITCH
    if phase is not Phase.SERVING:
        return DEFERRED
    return IN_PLACE if only_batch_sizes(active, decided) else NEW_WORKERS


@dataclass(frozen=True)
class SwitchTimes:
    """One switch as it happened: its clock readings (time.perf_counter, s) and its active energy."""

    interval: int
    began_s: float
    prepared_s: float  # the next configuration ready
    handover_s: float
    drained_s: float  # the last configuration's batches in flight done
    energy_j: float  # over preparation and drain, machine-wide
    how: str  # IN_PLACE (all four readings the same, 0 J) | NEW_WORKERS


class LiveServing:
    """The pipeline taking the arrivals, and the switch to the next one.

    `start(choice)` returns a pipeline started, loaded and warmed (`ServingPipeline`'s methods: submit,
    set_batch_sizes, hand_over, wait_drained, close_intake, close, errors). `meter` opens a window per switch,
    named `{name}-switch-{interval}`; `idle_power_w` turns its joules into active ones."""

    def __init__(self, choice: PipelineChoice, start: Callable[[PipelineChoice], object], meter,
                 idle_power_w: float, name: str):
        self.choice = choice  # the configuration that takes the arrivals
        self.pipeline = start(choice)
        self.phase = Phase.SERVING
        self.started = [self.pipeline]  # every pipeline started, to close at the end whatever happened
        self.timeline: list[SwitchTimes] = []
        self.deferred = 0
        self.stopped = threading.Event()
        self._start, self._meter, self._idle_power_w, self._name = start, meter, idle_power_w, name
        self._lock = threading.Lock()
        self._switchers: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def submit(self, request: RequestRecord, arrived: list[RequestRecord]) -> None:
        """`request` to the configuration taking the arrivals, recorded in `arrived` under the handover's lock."""
        with self._lock:
            self.pipeline.submit(request)
            arrived.append(request)

    def take(self, decided: PipelineChoice | None, interval: int) -> str:
        """The interval's decision acted on (`next_step`); returns what it did."""
        step = next_step(self.phase, self.choice, decided)
        if step == DEFERRED:
            self.deferred += 1
        elif step == IN_PLACE:
            self._resize(decided, interval)
        elif step == NEW_WORKERS:
            self.phase = Phase.PREPARING
            switcher = threading.Thread(target=self._switch, args=(decided, interval), name=f"switch-{interval}",
                                        daemon=True)
            switcher.start()
            self._switchers.append(switcher)
        return step

    def raise_error(self) -> None:
        """The first error of a switch's thread, raised in the caller's."""
        if self._errors:
            raise self._errors[0]

    def finish(self) -> None:
        """The run's end: the switch under way completed, then the last configuration drained."""
        for switcher in self._switchers:
            switcher.join()
        self.raise_error()
        with self._lock:
            last = self.pipeline
        last.close_intake()
        last.wait_drained()

    def close(self) -> None:
        """Every pipeline started ended; a switch preparing now closes what it makes once it sees `stopped`."""
        self.stopped.set()
        for switcher in self._switchers:
            switcher.join(timeout=60)
        for pipeline in self.started:
            pipeline.close()

    def raise_pipeline_errors(self) -> None:
        for pipeline in self.started:
            if pipeline.errors:
                raise pipeline.errors[0]

    def _resize(self, choice: PipelineChoice, interval: int) -> None:
        with self._lock:
            self.pipeline.set_batch_sizes([c.batch_size for c in choice.stages().values()])
            self.choice = choice
        now = time.perf_counter()
        self.timeline.append(SwitchTimes(interval, now, now, now, now, 0.0, IN_PLACE))

    def _switch(self, choice: PipelineChoice, interval: int) -> None:
        """The switch's thread: PREPARING → DRAINING → SERVING."""
        try:
            began, window = time.perf_counter(), f"{self._name}-switch-{interval}"
            self._meter.begin_window(window)
            nxt = self._start(choice)
            self.started.append(nxt)
            if self.stopped.is_set():  # the loop ended while this was prepared: no one else ends it
                nxt.close()
                return
            prepared = time.perf_counter()
            last, handover = self._hand_over(nxt, choice)
            last.wait_drained()
            drained = time.perf_counter()
            m = self._meter.end_window(window)
            last.close()
            self.timeline.append(SwitchTimes(interval, began, prepared, handover, drained,
                                             active_energy_j(m.total_j, self._idle_power_w, m.duration_s),
                                             NEW_WORKERS))
        except BaseException as err:  # raised in the loop's thread at the next interval
            self._errors.append(err)
        finally:
            self.phase = Phase.SERVING

    def _hand_over(self, nxt, choice: PipelineChoice) -> tuple[object, float]:
        """`nxt` takes the arrivals and the queued items (the feeder waits: they move before any new request);
        returns the last pipeline and the time of the handover."""
        with self._lock:
            last, self.pipeline, self.choice = self.pipeline, nxt, choice
            last.hand_over(nxt)
            handover = time.perf_counter()
            self.phase = Phase.DRAINING
        return last, handover
