"""The runner's batching, replicas and per-request timestamps, with fake stages so the tests are fast. Stages run in
worker processes unless a test says `isolation="threads"`: what a fake records in itself stays in its worker, so the
tests read the trial's result instead."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sustainable_ipa.data import Frame, GroundTruthBox
from sustainable_ipa.families.resnet import Classify
from sustainable_ipa.families.yolov5 import DetectAndCrop
from sustainable_ipa.pipeline.batching import BatchQueue
from sustainable_ipa.pipeline.load import arrival_offsets_s
from sustainable_ipa.pipeline.runner import StageRunner, StageSettings, StageSpec


def video_runner(detector, classifier, detector_settings, classifier_settings, crops_from_ground_truth=False,
                 **kwargs) -> StageRunner:
    """The video pipeline's two stages around fake models (crops from the ground truth, as random weights hand them
    on, when asked)."""
    handoff = "reference" if crops_from_ground_truth else "model"
    return StageRunner([StageSpec("detector", DetectAndCrop(detector, handoff), detector_settings),
                        StageSpec("classifier", Classify(classifier), classifier_settings)], **kwargs)


def crop_classes(request) -> list:
    return request.outputs.get("classifier", [])


class FakeDetector:
    """Finds `boxes_per_frame` boxes in every frame; records the batch sizes it saw (in its own process)."""

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


def batch_sizes(result, stage):
    return [b.size for b in result.batches if b.stage == stage]


def gone(pids, within_s=10.0):
    """Whether every process in `pids` has ended (the forkserver reaps workers, so an ended one leaves no trace)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not [p for p in pids if Path(f"/proc/{p}").exists()]:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("isolation", ["processes", "threads"])
def test_runner_batches_each_stage_and_timestamps_every_request(isolation):
    runner = video_runner(FakeDetector(boxes_per_frame=3), FakeClassifier(), StageSettings(4, 1, 1),
                            StageSettings(5, 1, 1), isolation=isolation)
    with runner:
        result = runner.run(frames(10), np.zeros(10))
    assert batch_sizes(result, "detector") == [4, 4, 2]
    assert sum(batch_sizes(result, "classifier")) == 30 and max(batch_sizes(result, "classifier")) == 5
    for r in result.requests:
        assert r.arrival_s <= r.stage_end_s["detector"] <= r.finish_s
        assert crop_classes(r) == [8, 8, 8]  # 8-pixel-wide boxes
        assert r.outputs["detector"][0].shape == (3, 6)
    assert {b.stage for b in result.batches} == {"detector", "classifier"}
    # a worker's clock is the parent's (CLOCK_MONOTONIC): its batches lie within the run
    assert all(result.start_s <= b.start_s <= b.end_s <= result.end_s for b in result.batches)


def test_a_runner_runs_again_and_its_workers_end_with_it():
    runner = video_runner(FakeDetector(boxes_per_frame=1), FakeClassifier(), StageSettings(2, 1, 1),
                            StageSettings(2, 1, 1))
    runner.start()
    pids = runner.replicas.pids()
    assert len(pids) == 2 and all(Path(f"/proc/{p}").exists() for p in pids)
    first, second = runner.run(frames(3), np.zeros(3)), runner.run(frames(5), np.zeros(5))
    assert runner.replicas.pids() == pids  # the same workers, not new ones per run
    assert [len(crop_classes(r)) for r in first.requests] == [1] * 3
    assert [len(crop_classes(r)) for r in second.requests] == [1] * 5
    runner.close()
    assert gone(pids)


def test_requests_without_crops_finish_when_detected():
    with video_runner(FakeDetector(boxes_per_frame=0), FakeClassifier(), StageSettings(2, 1, 1),
                        StageSettings(2, 1, 1)) as runner:
        result = runner.run(frames(3), np.zeros(3))
    assert all(r.finish_s == r.stage_end_s["detector"] and not crop_classes(r) for r in result.requests)


def test_replicas_are_parallel_workers():
    with video_runner(FakeDetector(delay_s=0.05), FakeClassifier(), StageSettings(1, 1, 2),
                        StageSettings(2, 1, 1)) as runner:
        result = runner.run(frames(8), np.zeros(8))
    detectors = [r for r in result.replicas if r.stage == "detector"]
    assert len({r.pid for r in detectors}) == 2 and not set(detectors[0].cores) & set(detectors[1].cores)
    assert {b.replica for b in result.batches if b.stage == "detector"} == {0, 1}
    assert sorted(batch_sizes(result, "detector")) == [1] * 8


def test_replica_threads_share_the_work_too():
    det = FakeDetector(delay_s=0.05)
    runner = video_runner(det, FakeClassifier(), StageSettings(1, 1, 2), StageSettings(2, 1, 1), isolation="threads")
    runner.run(frames(8), np.zeros(8))
    assert det.threads == {"detector-0", "detector-1"}


def test_ground_truth_crops_replace_detections_when_asked():
    gt = [GroundTruthBox((0, 0, 20, 30), 1), GroundTruthBox((5, 5, 15, 15), 32)]
    with video_runner(FakeDetector(boxes_per_frame=0), FakeClassifier(), StageSettings(2, 1, 1),
                        StageSettings(4, 1, 1), crops_from_ground_truth=True) as runner:
        result = runner.run(frames(2, gt), np.zeros(2))
    assert [sorted(crop_classes(r)) for r in result.requests] == [[10, 20], [10, 20]]


def test_repeated_inputs_reach_the_worker_intact():
    """Requests cycling over a dataset send each frame to a worker once per run; every request still gets its own."""
    images = [np.full((40, 64 + 8 * i, 3), i, np.uint8) for i in range(3)]
    dataset = [Frame(i + 1, f"f{i}", image, (GroundTruthBox((0, 0, image.shape[1], 10), 1),))
               for i, image in enumerate(images)]
    requests = [dataset[i % 3] for i in range(11)]
    with video_runner(FakeDetector(boxes_per_frame=0), FakeClassifier(), StageSettings(2, 1, 1),
                        StageSettings(3, 1, 1), crops_from_ground_truth=True) as runner:
        for _ in range(2):  # the second run starts with an empty cache on both ends
            result = runner.run(requests, np.zeros(len(requests)))
            assert [crop_classes(r) for r in result.requests] == [[64 + 8 * (i % 3)] for i in range(11)]


def test_poisson_arrivals_are_respected_and_seeded():
    offsets = arrival_offsets_s(5, "poisson", 20.0, seed=3)
    assert offsets[0] == 0 and np.all(np.diff(offsets) > 0)
    assert np.array_equal(offsets, arrival_offsets_s(5, "poisson", 20.0, seed=3))
    with video_runner(FakeDetector(), FakeClassifier(), StageSettings(1, 1, 1), StageSettings(2, 1, 1)) as runner:
        runner.start()
        result = runner.run(frames(5), offsets)
    arrivals = np.array([r.arrival_s for r in result.requests]) - result.requests[0].arrival_s
    assert np.allclose(arrivals, offsets, atol=0.03)


@pytest.mark.parametrize("isolation", ["processes", "threads"])
def test_a_stage_error_reaches_the_caller_and_ends_the_workers(isolation):
    runner = video_runner(FakeDetector(fail=True), FakeClassifier(), StageSettings(1, 1, 1), StageSettings(1, 1, 1),
                            isolation=isolation)
    runner.start()
    pids = runner.replicas.pids()
    with pytest.raises(RuntimeError, match="exploded") as raised:
        runner.run(frames(3), np.zeros(3))
    if isolation == "processes":
        assert "raised in the worker of stage 'detector' replica 0" in "".join(raised.value.__notes__)
        assert gone(pids)
