"""The detector stage: an ultralytics YOLOv5u model run batched, with ultralytics' own letterbox and NMS."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from sustainable_ipa.models.precision import forward_context
from sustainable_ipa.models.yolo_env import configure_ultralytics

configure_ultralytics()


class Detector:
    """Frames (BGR uint8) → per-frame detections `(n, 6)`: x1, y1, x2, y2 in frame pixels, confidence, class index."""

    def __init__(self, variant: str, weights_file: Path | None, image_size: int = 640, conf_threshold: float = 0.25,
                 iou_threshold: float = 0.45, max_detections: int = 100, device: str = "cpu", precision: str = "fp32"):
        from ultralytics import YOLO
        from ultralytics.data.augment import LetterBox
        from ultralytics.utils.torch_utils import get_flops, get_num_params

        # `yolov5s.yaml` builds the same YOLOv5u architecture as the `yolov5su.pt` checkpoint, with random init.
        yolo = YOLO(str(weights_file) if weights_file else f"{variant}.yaml", task="detect")
        model = yolo.model
        self.params = int(get_num_params(model))
        self.gmacs_per_image = float(get_flops(model, image_size)) / 2  # ultralytics reports 2 FLOPs per multiply-add
        # Fold batch-norm into convs as ultralytics' predictor does; channels_last suits oneDNN's CPU kernels (bench/).
        self.model = model.fuse(verbose=False).eval().to(device, memory_format=torch.channels_last)
        for p in self.model.parameters():
            p.requires_grad_(False)
        decode_one_shape_at_a_time(self.model.model[-1])
        self.variant = variant
        self.device = torch.device(device)
        self.precision = precision
        self.image_size = image_size
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self._letterbox = LetterBox

    def input_shape(self, frame_shapes: list[tuple[int, int]]) -> tuple[int, int]:
        """The smallest stride-aligned rectangle holding every frame of the batch scaled to `image_size`.

        Like ultralytics' own rectangular inference, but one shape per batch so that frames stack; frames of one
        video share it. Mixed orientations would need the square: `__call__` splits them first.
        """
        stride, s = 32, self.image_size
        heights, widths = zip(*((h * s / max(h, w), w * s / max(h, w)) for h, w in frame_shapes))
        return (int(np.ceil(max(heights) / stride) * stride), int(np.ceil(max(widths) / stride) * stride))

    def preprocess(self, frames: list[np.ndarray]) -> torch.Tensor:
        shape = self.input_shape([f.shape[:2] for f in frames])
        letterbox = self._letterbox(new_shape=shape, auto=False, scaleup=True, stride=32)
        boxed = np.stack([letterbox(image=f) for f in frames])  # B × H × W × 3, BGR
        x = torch.from_numpy(np.ascontiguousarray(boxed[..., ::-1])).to(self.device)  # RGB
        return x.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """The head's raw output, (B, 4 + classes, anchors), in fp32 whatever the forward ran in (NMS needs it)."""
        with forward_context(self.precision, self.device):
            out = self.model(x)
        return (out[0] if isinstance(out, (list, tuple)) else out).float()

    def postprocess(self, raw: torch.Tensor, input_shape: tuple[int, int],
                    frame_shapes: list[tuple[int, int]]) -> list[np.ndarray]:
        from ultralytics.utils.nms import non_max_suppression
        from ultralytics.utils.ops import scale_boxes

        kept = non_max_suppression(raw, self.conf_threshold, self.iou_threshold, max_det=self.max_detections,
                                   max_time_img=1.0)
        results = []
        for det, shape in zip(kept, frame_shapes):
            det = det.clone()
            det[:, :4] = scale_boxes(input_shape, det[:, :4], shape)
            results.append(det.cpu().numpy())
        return results

    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Detections per frame, in order. Portrait and landscape frames run as separate sub-batches, each at its own
        rectangle: one square holding both costs 1.7–1.9× (bench/RESULTS.md), and COCO-like datasets mix them."""
        results: list[np.ndarray] = [np.zeros((0, 6), np.float32)] * len(frames)
        for group in orientation_groups([f.shape[:2] for f in frames]):
            batch = [frames[i] for i in group]
            x = self.preprocess(batch)
            detections = self.postprocess(self.infer(x), tuple(x.shape[2:]), [f.shape[:2] for f in batch])
            for i, det in zip(group, detections):
                results[i] = det
        return results


def decode_one_shape_at_a_time(head) -> None:
    """Replicas share one model, and its Detect head caches anchors for the last input shape on the module: a
    replica could decode with another shape's anchors (a size-mismatch crash). Decoding, a few milliseconds of the
    forward, is serialised; the backbone still runs in parallel."""
    head._get_decode_boxes = SerialDecode(head)


class SerialDecode:
    """The head's own box decoding under a lock. Picklable, so that the model can go to a worker process (which
    gets a lock of its own)."""

    def __init__(self, head):
        self.head, self.lock = head, threading.Lock()

    def __call__(self, x):
        with self.lock:
            return type(self.head)._get_decode_boxes(self.head, x)

    def __getstate__(self) -> dict:
        return {"head": self.head}

    def __setstate__(self, state: dict) -> None:
        self.head, self.lock = state["head"], threading.Lock()


def orientation_groups(frame_shapes: list[tuple[int, int]]) -> list[list[int]]:
    """Indices of the portrait frames and of the others (landscape or square), each non-empty group in order."""
    portrait = [i for i, (h, w) in enumerate(frame_shapes) if h > w]
    others = [i for i, (h, w) in enumerate(frame_shapes) if h <= w]
    return [g for g in (portrait, others) if g]
