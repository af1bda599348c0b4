"""Moves requests through detector → classifier with batching, replica threads and per-request timestamps."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from sustainable_ipa.data import Frame
from sustainable_ipa.models.classifier import crop
from sustainable_ipa.pipeline.batching import BatchQueue


@dataclass(frozen=True)
class StageSettings:
    batch_size: int
    threads: int  # torch intra-op threads of each replica
    replicas: int  # worker threads of the stage, each taking whole batches


@dataclass
class RequestRecord:
    request_id: int
    frame: Frame = field(repr=False)
    arrival_s: float = float("nan")
    detected_s: float = float("nan")
    finish_s: float = float("nan")
    detections: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), np.float32), repr=False)
    crop_classes: list[int] = field(default_factory=list)
    pending_crops: int = 0

    @property
    def crops(self) -> int:
        return len(self.crop_classes)

    @property
    def latency_s(self) -> float:
        return self.finish_s - self.arrival_s


@dataclass(frozen=True)
class BatchTiming:
    stage: str
    size: int
    start_s: float
    end_s: float
    threads: int = 1

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def core_s(self) -> float:
        """Cores held busy × time: what the stage's share of machine-wide energy is apportioned by."""
        return self.duration_s * self.threads


@dataclass
class TrialResult:
    requests: list[RequestRecord]
    batches: list[BatchTiming]
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def stage_core_s(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for b in self.batches:
            out[b.stage] = out.get(b.stage, 0.0) + b.core_s
        return out


class PipelineRunner:
    """Runs one trial: a detector stage and a classifier stage, each with its own replicas and threads.

    With `crops_from_ground_truth` the classifier gets the frames' ground-truth boxes instead of the detector's
    (random detector weights find nothing, and the classifier's workload should stay realistic).
    """

    def __init__(self, detector, classifier, detector_settings: StageSettings, classifier_settings: StageSettings,
                 crops_from_ground_truth: bool = False):
        self.detector = detector
        self.classifier = classifier
        self.settings = {"detector": detector_settings, "classifier": classifier_settings}
        self.crops_from_ground_truth = crops_from_ground_truth

    def run(self, frames: list[Frame], arrival_offsets_s: np.ndarray,
            on_request_done: Callable[[RequestRecord], None] | None = None) -> TrialResult:
        requests = [RequestRecord(i, frame) for i, frame in enumerate(frames)]
        detector_queue: BatchQueue[RequestRecord] = BatchQueue()
        classifier_queue: BatchQueue[tuple[RequestRecord, np.ndarray]] = BatchQueue()
        stop = threading.Event()
        errors: list[BaseException] = []
        batches: list[BatchTiming] = []
        lock = threading.Lock()
        detectors_left = [self.settings["detector"].replicas]

        def finish(request: RequestRecord, now: float) -> None:
            request.finish_s = now
            if on_request_done is not None:
                on_request_done(request)

        def guarded(work: Callable[[], None]) -> Callable[[], None]:
            def target() -> None:
                try:
                    work()
                except BaseException as err:  # surfaced in the caller's thread after join
                    errors.append(err)
                    stop.set()
            return target

        def feed() -> None:
            start = time.perf_counter()
            if not np.any(arrival_offsets_s):
                for request in requests:
                    request.arrival_s = start
                detector_queue.put_many(requests)
            else:
                for request, offset in zip(requests, arrival_offsets_s):
                    delay = start + offset - time.perf_counter()
                    if delay > 0 and stop.wait(delay):
                        break
                    request.arrival_s = time.perf_counter()
                    detector_queue.put_many([request])
            detector_queue.close()

        def detect() -> None:
            settings = self.settings["detector"]
            torch.set_num_threads(settings.threads)  # per worker thread: OpenMP's thread count is per thread
            try:
                while (batch := detector_queue.take(settings.batch_size, stop)) is not None:
                    began = time.perf_counter()
                    detections = self.detector([r.frame.image_bgr for r in batch])
                    crops = []
                    for request, det in zip(batch, detections):
                        request.detections = det
                        boxes = [gt.box_xyxy for gt in request.frame.ground_truth] if self.crops_from_ground_truth \
                            else det[:, :4]
                        pieces = [c for c in (crop(request.frame.image_bgr, b) for b in boxes) if c is not None]
                        request.pending_crops = len(pieces)
                        crops.extend((request, c) for c in pieces)
                    ended = time.perf_counter()
                    with lock:
                        batches.append(BatchTiming("detector", len(batch), began, ended, settings.threads))
                    for request in batch:
                        request.detected_s = ended
                        if request.pending_crops == 0:
                            finish(request, ended)
                    classifier_queue.put_many(crops)
            finally:
                with lock:
                    detectors_left[0] -= 1
                    if detectors_left[0] == 0:
                        classifier_queue.close()

        def classify() -> None:
            settings = self.settings["classifier"]
            torch.set_num_threads(settings.threads)
            while (batch := classifier_queue.take(settings.batch_size, stop)) is not None:
                began = time.perf_counter()
                classes = self.classifier([c for _, c in batch])
                ended = time.perf_counter()
                with lock:
                    batches.append(BatchTiming("classifier", len(batch), began, ended, settings.threads))
                    done = []
                    for (request, _), cls in zip(batch, classes):
                        request.crop_classes.append(cls)
                        request.pending_crops -= 1
                        if request.pending_crops == 0:
                            done.append(request)
                for request in done:
                    finish(request, ended)

        workers = [threading.Thread(target=guarded(feed), name="feeder", daemon=True)]
        workers += [threading.Thread(target=guarded(detect), name=f"detector-{i}", daemon=True)
                    for i in range(self.settings["detector"].replicas)]
        workers += [threading.Thread(target=guarded(classify), name=f"classifier-{i}", daemon=True)
                    for i in range(self.settings["classifier"].replicas)]
        start = time.perf_counter()
        try:
            for worker in workers:
                worker.start()
            for worker in workers:
                while worker.is_alive():  # short joins keep Ctrl-C and SIGTERM responsive
                    worker.join(timeout=0.1)
        except BaseException:
            stop.set()
            for worker in workers:
                worker.join(timeout=30)
            raise
        if errors:
            raise errors[0]
        return TrialResult(requests, sorted(batches, key=lambda b: b.start_s), start, time.perf_counter())
