"""The `yolov5` family: IPA's video detector stage, an ultralytics YOLOv5u model run batched with ultralytics' own
letterbox and NMS. It takes frames and hands the next stage the crop of each box it finds (each ground-truth box's
crop with random weights, which find nothing). Accuracy: COCO mAP@0.5 by pycocotools on the dataset's annotations."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from sustainable_ipa.compat.ultralytics_private import decode_boxes, replace_decode_boxes
from sustainable_ipa.errors import UserError
from sustainable_ipa.families.base import FamilySettings, Handoff, ModelFamily, StageModel, WeightsSource
from sustainable_ipa.families.resnet import crop
from sustainable_ipa.metrics.accuracy import coco_map, coco_results
from sustainable_ipa.models.fidelity import centred, cosines, fp32_twin
from sustainable_ipa.models.precision import forward_context
from sustainable_ipa.models.weights import download_file
from sustainable_ipa.models.yolo_env import configure_ultralytics
from sustainable_ipa.pipeline.stage import ItemResult

configure_ultralytics()

YOLO_RELEASE = "v8.4.0"  # the ultralytics assets release that hosts the YOLOv5u checkpoints


class Detector:
    """Frames (BGR uint8) → per-frame detections `(n, 6)`: x1, y1, x2, y2 in frame pixels, confidence, class index."""

    def __init__(self, variant: str, weights_file: Path | None, image_size: int = 640, conf_threshold: float = 0.25,
                 iou_threshold: float = 0.45, max_detections: int = 100, device: str = "cpu", precision: str = "fp32"):
        from ultralytics import YOLO
        from ultralytics.data.augment import LetterBox
        from ultralytics.utils.torch_utils import get_flops, get_num_params

        # `yolov5s.yaml` builds the same YOLOv5u architecture as the `yolov5su.pt` checkpoint, with random init.
        model = YOLO(f"{variant}.yaml", task="detect").model
        if weights_file:
            model = _checked_checkpoint(YOLO(str(weights_file), task="detect").model, model, variant, weights_file)
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
        self.runtime = "torch"
        self._openvino = None  # CompiledStage once `use_openvino` ran
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

    def letterboxed(self, frames: list[np.ndarray]) -> torch.Tensor:
        """The batch at its rectangle, RGB uint8, B × 3 × H × W."""
        shape = self.input_shape([f.shape[:2] for f in frames])
        letterbox = self._letterbox(new_shape=shape, auto=False, scaleup=True, stride=32)
        boxed = np.stack([letterbox(image=f) for f in frames])  # B × H × W × 3, BGR
        return torch.from_numpy(np.ascontiguousarray(boxed[..., ::-1])).to(self.device).permute(0, 3, 1, 2)

    def preprocess(self, frames: list[np.ndarray]) -> torch.Tensor:
        x = self.letterboxed(frames)
        return x.float().div_(255.0).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """The head's raw output, (B, 4 + classes, anchors), in fp32 whatever the forward ran in (NMS needs it)."""
        if self.runtime == "openvino":
            return self._openvino(x).float()
        with forward_context(self.precision, self.device):
            out = self.model(x)
        return (out[0] if isinstance(out, (list, tuple)) else out).float()

    def use_openvino(self, cache_dir: Path, calibration_frames: list[np.ndarray]):
        """Run on OpenVINO from now on: this model exported by ultralytics (int8: quantised on the frames), or taken
        from the cache. Returns the Export (where, and what it cost)."""
        import ultralytics

        from sustainable_ipa.models.openvino_runtime import (CompiledStage, ExportKey, export, inputs_digest,
                                                             library_versions, weights_digest)

        # One frame per calibration item, letterboxed to its own rectangle exactly as at run time.
        items = [self.letterboxed([f]).cpu().contiguous() for f in calibration_frames] \
            if self.precision == "int8" else []
        ir_precision = "int8" if self.precision == "int8" else "fp32"  # bf16 is a compile-time hint on the fp32 IR
        versions = {**library_versions(), "ultralytics": ultralytics.__version__}  # the exporter shapes the graph
        key = ExportKey(self.variant, ir_precision, weights_digest(self.model),
                        inputs_digest([i.numpy() for i in items]), len(items), tuple(sorted(versions.items())))
        made = export(key, cache_dir, ultralytics_openvino(self.model, self.variant, self.image_size, items))
        self.runtime, self._openvino = "openvino", CompiledStage(made.xml, self.precision)
        return made

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


def ultralytics_openvino(model: torch.nn.Module, variant: str, image_size: int, calibration: list[torch.Tensor]):
    """A `build` for `openvino_runtime.export`: ultralytics' own `export(format="openvino", dynamic=True,
    quantize=8)`, which readies the model (Detect in export mode, shape-dependent anchors), traces and converts it
    with dynamic batch and H × W, and for int8 runs NNCF (MIXED preset) with the whole Detect head (its convs, the
    DFL, the sigmoid, box decoding) kept in float, as ultralytics does since its PR #25306. Its output is the torch
    path's raw head output, (B, 4 + classes, anchors), so NMS and postprocessing are shared.

    Calibration bypasses ultralytics' `data=` YAML: its dataset check calls `check_font`, which fetches Arial.ttf
    over the network whatever YOLO_OFFLINE says, and its loader letterboxes to the square only. The exporter is
    handed the run's own frames instead, as uint8 batches its `_transform_fn` scales to [0, 1], like its loader's."""

    def build(folder: Path) -> None:
        from ultralytics.engine.exporter import Exporter

        class RunFramesExporter(Exporter):
            def get_int8_calibration_dataloader(self, prefix=""):
                return calibration

        previous = model.__dict__.get("pt_path")
        model.pt_path = str(folder / f"{variant}.pt")  # the exporter writes its folder beside this path
        try:
            produced = Path(RunFramesExporter(overrides={
                "format": "openvino", "dynamic": True, "quantize": 8 if calibration else None, "imgsz": image_size,
                "batch": 1, "device": "cpu", "nms": None, "data": "the run's frames", "verbose": False})(model=model))
        finally:
            if previous is None:
                del model.pt_path
            else:
                model.pt_path = previous
        xml = next(produced.glob("*.xml"))
        xml.rename(folder / "model.xml")  # the IR finds its weights by the xml's name
        xml.with_suffix(".bin").rename(folder / "model.bin")
        shutil.rmtree(produced)

    return build


def decode_one_shape_at_a_time(head) -> None:
    """Replicas share one model, and its Detect head caches anchors for the last input shape on the module: a
    replica could decode with another shape's anchors (a size-mismatch crash). Decoding, a few milliseconds of the
    forward, is serialised; the backbone still runs in parallel."""
    replace_decode_boxes(head, SerialDecode(head))


class SerialDecode:
    """The head's own box decoding under a lock. Picklable, so that the model can go to a worker process (which
    gets a lock of its own)."""

    def __init__(self, head):
        self.head, self.lock = head, threading.Lock()

    def __call__(self, x):
        with self.lock:
            return decode_boxes(self.head, x)

    def __getstate__(self) -> dict:
        return {"head": self.head}

    def __setstate__(self, state: dict) -> None:
        self.head, self.lock = state["head"], threading.Lock()


def orientation_groups(frame_shapes: list[tuple[int, int]]) -> list[list[int]]:
    """Indices of the portrait frames and of the others (landscape or square), each non-empty group in order."""
    portrait = [i for i, (h, w) in enumerate(frame_shapes) if h > w]
    others = [i for i, (h, w) in enumerate(frame_shapes) if h <= w]
    return [g for g in (portrait, others) if g]


def _checked_checkpoint(loaded, expected, variant: str, path) -> torch.nn.Module:
    """The checkpoint's model, refused in one line when it is another architecture than `variant` (its weights'
    names and shapes differ from the architecture the variant's YAML builds)."""
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    if shapes(loaded) != shapes(expected):
        raise UserError(f"the weights in {path} are another architecture than detector variant {variant}",
                        f"put {weights_file_name(variant)} there, or pass weights=random")
    return loaded


def weights_file_name(variant: str) -> str:
    return f"{variant}u.pt"  # the ultralytics re-release of YOLOv5 with an anchor-free head


def weights_url(variant: str) -> str:
    return f"https://github.com/ultralytics/assets/releases/download/{YOLO_RELEASE}/{weights_file_name(variant)}"


# Fidelity: how far a detector in another precision or runtime strays from torch fp32 -------------------------------
def detector_fidelity(detector: Detector, frames: list[np.ndarray]) -> dict[str, float]:
    """The mean cosine of the raw head output against fp32, per frame, for the boxes and for the class scores apart:
    box coordinates are hundreds of pixels and scores below 1, so one cosine over both would see only the boxes.
    Scores also get their correlation (the cosine once each frame's mean score is taken off): they sit on a common
    offset (the head's prior bias, or 0.5), which keeps the plain cosine near 1 whatever the network computes."""
    boxes, scores, correlations = [], [], []
    for frame in frames:  # one at a time: frames of other shapes do not stack
        x = detector.preprocess([frame])
        low, reference = detector.infer(x), fp32_twin(detector).infer(x)  # (1, 4 + classes, anchors)
        boxes.append(cosines(low[:, :4], reference[:, :4]))
        scores.append(cosines(low[:, 4:], reference[:, 4:]))
        correlations.append(cosines(centred(low[:, 4:]), centred(reference[:, 4:])))
    return {"box_cosine_mean": float(torch.cat(boxes).mean()),
            "score_cosine_mean": float(torch.cat(scores).mean()),
            "score_correlation_mean": float(torch.cat(correlations).mean()),
            "items": float(len(frames))}


def map_against_fp32(detector: Detector, frames: list[np.ndarray]) -> dict[str, float]:
    """COCOeval's mAP of this detector's detections scored against torch fp32's on the same frames, as if fp32's
    were the ground truth: how much of what fp32 finds survives the precision (1.0: the same boxes). Empty when
    fp32 finds nothing (random weights usually): there is nothing to score against."""
    reference = fp32_twin(detector)(frames)
    if not any(len(d) for d in reference):
        return {}
    low = detector(frames)
    classes = sorted({int(c) for d in reference for c in d[:, 5]} | {int(c) for d in low for c in d[:, 5]})
    ids = list(range(max(classes) + 1))  # class index → category id: itself, the truth here being fp32's classes
    truth = {"images": [{"id": i, "width": f.shape[1], "height": f.shape[0]} for i, f in enumerate(frames)],
             "categories": [{"id": c, "name": str(c)} for c in ids],
             "annotations": [{"id": n, "image_id": i, "category_id": int(c), "iscrowd": 0,
                              "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                              "area": float((x2 - x1) * (y2 - y1))}
                             for n, (i, (x1, y1, x2, y2, _, c)) in enumerate(
                                 (i, row) for i, det in enumerate(reference) for row in det)]}
    results = [r for i, det in enumerate(low) for r in coco_results(i, det, ids)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fp32_detections.json"
        path.write_text(json.dumps(truth))
        map50, map50_95 = coco_map(path, list(range(len(frames))), results)
    return {"map50_vs_fp32": map50, "map_vs_fp32": map50_95}


# The family --------------------------------------------------------------------------------------------------------
class YoloV5Params(FamilySettings):
    image_size: int = Field(ge=32, description="letterboxed square input, pixels")
    conf_threshold: float = Field(ge=0, le=1)
    iou_threshold: float = Field(ge=0, le=1)
    max_detections: int = Field(ge=1)


class DetectAndCrop(StageModel):
    """Frames → per frame its detections `(n, 6)`; hands on the crop of every box (with `handoff="reference"` the
    frame's ground-truth boxes instead: random weights find nothing, and the next stage's workload should stay
    realistic)."""

    def __init__(self, detector, handoff: Handoff = "model"):
        self.detector, self.handoff = detector, handoff

    variant = property(lambda self: self.detector.variant)
    precision = property(lambda self: self.detector.precision)
    runtime = property(lambda self: self.detector.runtime)

    def __call__(self, frames: list) -> list[ItemResult]:
        results = []
        for frame, det in zip(frames, self.detector([f.image_bgr for f in frames])):
            boxes = [gt.box_xyxy for gt in frame.ground_truth] if self.handoff == "reference" else det[:, :4]
            crops = [c for c in (crop(frame.image_bgr, b) for b in boxes) if c is not None]
            results.append(ItemResult(det, crops))
        return results

    def fidelity(self, frames: list) -> dict[str, float]:
        images = [f.image_bgr for f in frames]
        return {**detector_fidelity(self.detector, images), **map_against_fp32(self.detector, images)}

    def use_openvino(self, cache_dir: Path, frames: list):
        return self.detector.use_openvino(cache_dir, [f.image_bgr for f in frames])

    def describe(self) -> dict[str, float]:
        return {"params": self.detector.params, "gmacs_per_image": round(self.detector.gmacs_per_image, 4)}

    def fp32_twin(self) -> "DetectAndCrop":
        return DetectAndCrop(fp32_twin(self.detector), self.handoff)


class YoloV5(ModelFamily):
    """YOLOv5 n/s/m/l/x (ultralytics' YOLOv5u re-release), frames in, a crop per box out."""

    consumes, emits = "frame", "crop"
    metric = "map50"
    metric_description = "COCO mAP@0.5 (%)"
    runtimes = ("torch", "openvino")
    Params = YoloV5Params
    preload = ("cv2", "ultralytics.nn.tasks", "ultralytics.data.augment", "ultralytics.utils.nms",
               "ultralytics.utils.ops")

    def weights_source(self, variant: str, model) -> WeightsSource:
        from ultralytics.utils import SETTINGS

        name = weights_file_name(variant)
        return WeightsSource(name, weights_url(variant), (Path(SETTINGS["weights_dir"]) / name,),
                             fetch=lambda destination: download_file(weights_url(variant), destination))

    def build(self, variant: str, model, weights: Path | None, precision: str, device: str,
              handoff: Handoff) -> DetectAndCrop:
        p = self.params
        return DetectAndCrop(Detector(variant, weights, p.image_size, p.conf_threshold, p.iou_threshold,
                                      p.max_detections, device, precision), handoff)

    def reference_handoffs(self, frame) -> list | None:
        if not frame.ground_truth:
            return None
        return [c for gt in frame.ground_truth if (c := crop(frame.image_bgr, gt.box_xyxy)) is not None]

    def accuracy(self, model: DetectAndCrop, frames: list, dataset) -> dict[str, float]:
        """mAP@0.5 and mAP@0.5:0.95 of the model's detections on the frames, against the dataset's COCO
        annotations (none: nothing to score)."""
        from ultralytics.data.converter import coco80_to_coco91_class

        if getattr(dataset, "annotations", None) is None or not any(f.ground_truth for f in frames):
            return {}
        coco_ids = coco80_to_coco91_class()
        detections = model.detector([f.image_bgr for f in frames])
        results = [r for f, det in zip(frames, detections) for r in coco_results(f.image_id, det, coco_ids)]
        map50, map50_95 = coco_map(dataset.annotations, [f.image_id for f in frames], results)
        return {"map50": map50, "map50_95": map50_95}
