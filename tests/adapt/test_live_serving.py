"""The live loop's states (`adapt/live_serving.py`), one transition at a time, on fake pipelines: no worker started."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from sustainable_ipa.adapt.live_serving import DEFERRED, LiveServing, Phase, next_step
from sustainable_ipa.adapt.switching import IN_PLACE, NEW_WORKERS, NO_SWITCH
from sustainable_ipa.search.space import PipelineChoice, StageChoice


def choice(batch: int = 1, variant: str = "resnet18") -> PipelineChoice:
    return PipelineChoice(detector=StageChoice("yolov5n", 1, 1, 1), classifier=StageChoice(variant, batch, 1, 1))


class FakePipeline:
    """What the state machine asks of a serving pipeline, recorded; `wait_drained` waits for `drained`."""

    def __init__(self, choice: PipelineChoice, drained: threading.Event):
        self.choice, self.drained = choice, drained
        self.submitted, self.batch_sizes, self.successor, self.errors = [], None, None, []
        self.intake_closed = self.closed = False

    def submit(self, request) -> None:
        self.submitted.append(request)

    def set_batch_sizes(self, sizes) -> None:
        self.batch_sizes = list(sizes)

    def hand_over(self, successor: "FakePipeline") -> int:
        self.successor = successor
        return 0

    def close_intake(self) -> None:
        self.intake_closed = True

    def wait_drained(self) -> bool:
        assert self.drained.wait(5)
        return True

    def close(self) -> None:
        self.closed = True


class Starts:
    """`start(choice)`: the first pipeline at once, every later one once `ready` is set (or `error` raised)."""

    def __init__(self):
        self.ready, self.drained = threading.Event(), threading.Event()
        self.pipelines: list[FakePipeline] = []
        self.error: BaseException | None = None

    def __call__(self, choice: PipelineChoice) -> FakePipeline:
        if self.pipelines:
            assert self.ready.wait(5)
            if self.error:
                raise self.error
        self.pipelines.append(FakePipeline(choice, self.drained))
        return self.pipelines[-1]


class FakeMeter:
    def __init__(self):
        self.windows: list[tuple[str, str]] = []

    def begin_window(self, name: str) -> None:
        self.windows.append(("begin", name))

    def end_window(self, name: str):
        self.windows.append(("end", name))
        return SimpleNamespace(total_j=5.0, duration_s=2.0)  # 3 J active over an idle 1 W


def serving(starts: Starts, meter: FakeMeter | None = None) -> LiveServing:
    return LiveServing(choice(1), starts, meter or FakeMeter(), 1.0, "ipa")


def preparing(starts: Starts) -> LiveServing:
    """A switch to new workers decided at interval 1, its next configuration not ready yet."""
    live = serving(starts)
    assert live.take(choice(1, "resnet34"), 1) == NEW_WORKERS
    return live


def in_a_thread(work) -> threading.Thread:
    thread = threading.Thread(target=work)
    thread.start()
    return thread


def eventually(condition, timeout_s: float = 5.0) -> None:
    ends = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < ends, "the switch's thread never got there"
        time.sleep(0.005)


def test_what_a_decision_does_in_each_state():
    for phase in Phase:
        assert next_step(phase, choice(1), choice(1)) == NO_SWITCH  # the configuration taking the arrivals
        assert next_step(phase, choice(1), None) == NO_SWITCH
    assert next_step(Phase.SERVING, choice(1), choice(4)) == IN_PLACE
    assert next_step(Phase.SERVING, choice(1), choice(1, "resnet34")) == NEW_WORKERS
    for phase in (Phase.PREPARING, Phase.DRAINING):
        assert next_step(phase, choice(1), choice(4)) == DEFERRED
        assert next_step(phase, choice(1), choice(1, "resnet34")) == DEFERRED


def test_a_change_of_batch_sizes_alone_stays_serving_on_the_same_workers():
    starts = Starts()
    live = serving(starts)
    assert live.take(choice(4), 3) == IN_PLACE
    assert live.phase is Phase.SERVING and live.choice == choice(4)
    [only] = starts.pipelines
    assert live.pipeline is only and only.batch_sizes == [1, 4]
    [switch] = live.timeline
    assert (switch.interval, switch.how, switch.energy_j) == (3, IN_PLACE, 0.0)
    assert switch.began_s == switch.prepared_s == switch.handover_s == switch.drained_s


def test_new_workers_are_prepared_while_the_current_ones_serve_then_take_over_while_those_drain():
    starts, meter = Starts(), FakeMeter()
    live = serving(starts, meter)
    current = starts.pipelines[0]
    assert live.take(choice(1, "resnet34"), 2) == NEW_WORKERS
    assert live.phase is Phase.PREPARING and live.choice == choice(1)
    live.submit("during preparation", arrived := [])
    assert current.submitted == arrived == ["during preparation"]

    starts.ready.set()  # preparing → draining: the next one takes the arrivals and the queued items
    eventually(lambda: live.phase is Phase.DRAINING)
    nxt = starts.pipelines[1]
    assert live.pipeline is nxt and live.choice == choice(1, "resnet34") and current.successor is nxt
    live.submit("after the handover", arrived)
    assert nxt.submitted == ["after the handover"] and not current.closed

    starts.drained.set()  # draining → serving: the last one ended, the switch recorded
    eventually(lambda: live.phase is Phase.SERVING)
    eventually(lambda: live.timeline)
    assert current.closed and not nxt.closed
    [switch] = live.timeline
    assert (switch.interval, switch.how, switch.energy_j) == (2, NEW_WORKERS, 3.0)
    assert switch.began_s <= switch.prepared_s <= switch.handover_s <= switch.drained_s
    assert meter.windows == [("begin", "ipa-switch-2"), ("end", "ipa-switch-2")]


def test_an_interval_ending_while_a_switch_is_under_way_defers_its_decision_until_the_switch_is_done():
    starts = Starts()
    live = preparing(starts)
    assert live.take(choice(1), 2) == NO_SWITCH  # back to what serves: nothing to do, nothing deferred
    assert live.take(choice(4), 2) == DEFERRED and live.phase is Phase.PREPARING
    starts.ready.set()
    eventually(lambda: live.phase is Phase.DRAINING)
    assert live.take(choice(4), 3) == DEFERRED
    assert live.deferred == 2 and len(starts.pipelines) == 2  # no other preparation began
    starts.drained.set()
    eventually(lambda: live.phase is Phase.SERVING)
    assert live.take(choice(4, "resnet34"), 4) == IN_PLACE  # taken again, from the configuration now serving
    assert [s.how for s in live.timeline] == [NEW_WORKERS, IN_PLACE]


def test_the_run_ending_while_preparing_waits_for_the_switch_and_drains_the_configuration_it_brought():
    starts = Starts()
    live = preparing(starts)
    finishing = in_a_thread(live.finish)
    time.sleep(0.05)
    assert finishing.is_alive()  # the switch is still preparing
    starts.ready.set()
    starts.drained.set()
    finishing.join(5)
    assert not finishing.is_alive()
    first, last = starts.pipelines
    assert last.intake_closed and not first.intake_closed  # the first handed over; the last closed its intake
    assert first.closed and live.phase is Phase.SERVING


def test_a_loop_stopped_while_preparing_closes_what_was_prepared_without_handing_over():
    starts = Starts()
    live = preparing(starts)
    closing = in_a_thread(live.close)
    eventually(live.stopped.is_set)
    starts.ready.set()
    closing.join(5)
    first, prepared = starts.pipelines
    assert first.successor is None and live.pipeline is first and live.choice == choice(1)
    assert first.closed and prepared.closed and not live.timeline and live.phase is Phase.SERVING


def test_an_error_while_preparing_is_raised_in_the_loops_thread_and_the_current_one_serves_on():
    starts = Starts()
    starts.error = RuntimeError("the next configuration did not start")
    live = preparing(starts)
    starts.ready.set()
    eventually(lambda: live.phase is Phase.SERVING)
    with pytest.raises(RuntimeError, match="did not start"):
        live.raise_error()
    assert live.pipeline is starts.pipelines[0] and not live.timeline


def test_a_serving_pipelines_error_is_raised_after_the_run():
    starts = Starts()
    live = serving(starts)
    live.raise_pipeline_errors()  # none
    starts.pipelines[0].errors.append(ValueError("a stage failed"))
    with pytest.raises(ValueError, match="a stage failed"):
        live.raise_pipeline_errors()


def test_the_feeder_submits_each_request_at_its_time_under_its_interval_until_the_loop_stops():
    from sustainable_ipa.adapt.live import Clock, feed

    starts = Starts()
    live = serving(starts)
    arrived = [[], []]
    began = time.perf_counter()
    feed([(0.0, 0), (0.02, 0), (0.04, 1)], ["a", "b"], live, arrived, Clock(began, 0.03))
    assert time.perf_counter() - began >= 0.04
    assert [[r.request_id for r in rs] for rs in arrived] == [[0, 1], [2]]
    assert [r.item for r in starts.pipelines[0].submitted] == ["a", "b", "a"]

    live.stopped.set()
    late = [[]]
    feed([(0.0, 0), (60.0, 0)], ["a"], live, late, Clock(time.perf_counter(), 60.0))
    assert len(late[0]) == 1  # the first was due; the loop stopped before the second
