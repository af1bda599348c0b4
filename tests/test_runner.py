"""The runner's batching, replicas and per-request timestamps, with fake stages so the tests are fast."""

import threading
import time

import numpy as np
import pytest

from sustainable_ipa.data import Frame, GroundTruthBox
from sustainable_ipa.pipeline.batching import BatchQueue
from sustainable_ipa.pipeline.load import arrival_offsets_s
from sustainable_ipa.pipeline.runner import PipelineRunner, StageSettings


class FakeDetector:
    """Finds `boxes_per_frame` boxes in every frame; records the batch sizes it saw."""

    def __init__(self, boxes_per_frame=2, delay_s=0.0, fail=False):
        self.boxes_per_frame, self.delay_s, self.fail = boxes_per_frame, delay_s, fail
        self.batch_sizes, self.threads = [], set()

    def __call__(self, images):
        if self.fail:
            raise RuntimeError("detector exploded")
        self.batch_sizes.append(len(images))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        det = np.array([[10 * i, 10, 10 * i + 8, 18, 0.9, 0] for i in range(self.boxes_per_frame)], np.float32)
        return [det.reshape(-1, 6) for _ in images]


class FakeClassifier:
    def __init__(self):
        self.batch_sizes = []

    def __call__(self, crops):
        self.batch_sizes.append(len(crops))
        return [c.shape[1] for c in crops]  # "class" = crop width, to check crops arrive intact


def frames(n, gt=()):
    image = np.zeros((40, 64, 3), np.uint8)
    return [Frame(i + 1, f"f{i}", image, tuple(gt)) for i in range(n)]


def test_batch_queue_hands_out_full_batches_then_the_remainder():
    q, stop = BatchQueue(), threading.Event()
    q.put_many(list(range(5)))
    assert q.take(2, stop) == [0, 1] and q.take(2, stop) == [2, 3]
    q.close()
    assert q.take(2, stop) == [4] and q.take(2, stop) is None


def test_batch_queue_waits_for_a_full_batch():
    q, stop, got = BatchQueue(), threading.Event(), []
    t = threading.Thread(target=lambda: got.append(q.take(3, stop)))
    t.start()
    q.put_many([1, 2])
    time.sleep(0.2)
    assert not got  # still waiting for the third item
    q.put_many([3])
    t.join(2)
    assert got == [[1, 2, 3]]


def test_runner_batches_each_stage_and_timestamps_every_request():
    det, cls = FakeDetector(boxes_per_frame=3), FakeClassifier()
    runner = PipelineRunner(det, cls, StageSettings(4, 1, 1), StageSettings(5, 1, 1))
    result = runner.run(frames(10), np.zeros(10))
    assert det.batch_sizes == [4, 4, 2]
    assert sum(cls.batch_sizes) == 30 and max(cls.batch_sizes) == 5
    for r in result.requests:
        assert r.arrival_s <= r.detected_s <= r.finish_s
        assert r.crops == 3 and r.crop_classes == [8, 8, 8]  # 8-pixel-wide boxes
    assert {b.stage for b in result.batches} == {"detector", "classifier"}


def test_requests_without_crops_finish_when_detected():
    runner = PipelineRunner(FakeDetector(boxes_per_frame=0), FakeClassifier(), StageSettings(2, 1, 1), StageSettings(2, 1, 1))
    result = runner.run(frames(3), np.zeros(3))
    assert all(r.finish_s == r.detected_s and r.crops == 0 for r in result.requests)


def test_replicas_are_parallel_workers():
    det = FakeDetector(delay_s=0.05)
    runner = PipelineRunner(det, FakeClassifier(), StageSettings(1, 1, 2), StageSettings(2, 1, 1))
    runner.run(frames(8), np.zeros(8))
    assert det.threads == {"detector-0", "detector-1"}


def test_ground_truth_crops_replace_detections_when_asked():
    gt = [GroundTruthBox((0, 0, 20, 30), 1), GroundTruthBox((5, 5, 15, 15), 32)]
    runner = PipelineRunner(FakeDetector(boxes_per_frame=0), FakeClassifier(), StageSettings(2, 1, 1),
                            StageSettings(4, 1, 1), crops_from_ground_truth=True)
    result = runner.run(frames(2, gt), np.zeros(2))
    assert [sorted(r.crop_classes) for r in result.requests] == [[10, 20], [10, 20]]


def test_poisson_arrivals_are_respected_and_seeded():
    offsets = arrival_offsets_s(5, "poisson", 20.0, seed=3)
    assert offsets[0] == 0 and np.all(np.diff(offsets) > 0)
    assert np.array_equal(offsets, arrival_offsets_s(5, "poisson", 20.0, seed=3))
    result = PipelineRunner(FakeDetector(), FakeClassifier(), StageSettings(1, 1, 1), StageSettings(2, 1, 1)).run(
        frames(5), offsets)
    arrivals = np.array([r.arrival_s for r in result.requests]) - result.requests[0].arrival_s
    assert np.allclose(arrivals, offsets, atol=0.03)


def test_a_stage_error_reaches_the_caller():
    runner = PipelineRunner(FakeDetector(fail=True), FakeClassifier(), StageSettings(1, 1, 1), StageSettings(1, 1, 1))
    with pytest.raises(RuntimeError, match="exploded"):
        runner.run(frames(3), np.zeros(3))


def test_stage_threads_set_torch_threads_in_the_worker():
    import torch

    seen = []

    class ThreadProbe(FakeDetector):
        def __call__(self, images):
            seen.append(torch.get_num_threads())
            return super().__call__(images)

    PipelineRunner(ThreadProbe(), FakeClassifier(), StageSettings(1, 2, 1), StageSettings(1, 1, 1)).run(frames(1), np.zeros(1))
    assert seen == [2]
