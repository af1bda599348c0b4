"""A configuration serving requests as they come hands over to the next one without losing or repeating one."""

from __future__ import annotations

import os
import time

import pytest

from sustainable_ipa.pipeline.runner import RequestRecord
from sustainable_ipa.pipeline.serving import ServingPipeline
from sustainable_ipa.pipeline.stage import ItemResult, StageSettings, StageSpec


class SleepsAndSigns:
    """Sleeps `s` per batch; each item's output is the worker's pid, and it hands on `hand_on` items."""

    def __init__(self, s: float, hand_on: int = 0):
        self.s, self.hand_on = s, hand_on

    def __call__(self, batch: list) -> list[ItemResult]:
        time.sleep(self.s)
        return [ItemResult(os.getpid(), [item] * self.hand_on) for item in batch]


def pipeline(batch_a: int, done: list) -> ServingPipeline:
    return ServingPipeline([StageSpec("a", SleepsAndSigns(0.05, hand_on=3), StageSettings(batch_a, 1, 1)),
                            StageSpec("b", SleepsAndSigns(0.05), StageSettings(2, 1, 1))], cores=[0],
                           on_request_done=done.append)


@pytest.mark.slow
def test_a_handover_moves_every_queued_item_and_loses_no_request():
    done: list[RequestRecord] = []
    first, second = pipeline(1, done), pipeline(2, done)
    try:
        first.start(["warm"])
        second.start(["warm"])
        first_pids, second_pids = set(first.replicas.pids()), set(second.replicas.pids())
        requests = [RequestRecord(i, f"frame-{i}") for i in range(12)]
        for request in requests[:8]:
            first.submit(request)
        time.sleep(0.2)  # the first stage has begun some, the second holds their items
        moved = first.hand_over(second)
        with pytest.raises(RuntimeError, match="no longer takes requests"):
            first.submit(requests[8])
        second.set_batch_sizes([1, 1])  # in place: its next batches are single items
        for request in requests[8:]:
            second.submit(request)
        assert first.wait_drained(10)
        second.close_intake()
        assert second.wait_drained(10)
    finally:
        first.close()
        second.close()
    assert moved > 0
    assert sorted(r.request_id for r in done) == list(range(12))  # each request once
    for request in requests:
        assert request.pending == 0 and request.finish_s >= request.arrival_s
        assert len(request.outputs["a"]) == 1 and len(request.outputs["b"]) == 3  # no item lost or served twice
    # some requests began in the first configuration and ended in the second; the last ones never saw the first
    assert any(r.outputs["a"][0] in first_pids and set(r.outputs["b"]) & second_pids for r in requests)
    assert all(r.outputs["a"][0] in second_pids for r in requests[8:])
    assert {b.size for b in second.batches if b.start_s > requests[-1].arrival_s} == {1}
