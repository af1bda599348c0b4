"""The `resnet` family: IPA's video classifier stage, a torchvision ResNet on crops resized to a square with
ImageNet normalisation; the last stage, it hands nothing on. Accuracy: top-1 on the dataset's ground-truth crops
whose COCO category has ImageNet counterparts (`coco_to_imagenet.yaml`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from pydantic import Field

from sustainable_ipa.errors import UserError
from sustainable_ipa.families.base import FamilySettings, Handoff, ModelFamily, StageModel, WeightsSource
from sustainable_ipa.models.fidelity import cosines, fp32_twin
from sustainable_ipa.models.precision import forward_context
from sustainable_ipa.models.weights import download_file
from sustainable_ipa.pipeline.stage import ItemResult

MAPPING_FILE = Path(__file__).with_name("coco_to_imagenet.yaml")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def classifier_meta(variant: str) -> dict:
    """torchvision's metadata of the IMAGENET1K_V1 weights (available offline): metrics, ops, params, categories."""
    from torchvision.models import get_model_weights

    return get_model_weights(variant)["IMAGENET1K_V1"].meta


class Classifier:
    """Crops (BGR uint8, any size) → top-1 ImageNet class index per crop."""

    def __init__(self, variant: str, weights_file: Path | None, crop_size: int = 224, device: str = "cpu",
                 precision: str = "fp32"):
        from torchvision.models import get_model

        model = get_model(variant, weights=None)
        if weights_file is not None:
            try:
                model.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
            except (RuntimeError, KeyError, TypeError) as err:  # another architecture's tensors, or no state dict
                raise UserError(f"the weights in {weights_file} are not {variant}'s ({str(err).splitlines()[0]})",
                                f"put {weights_file_name(variant)} there, or pass weights=random") from None
        meta = classifier_meta(variant)
        self.params = int(meta["num_params"])
        self.gmacs_per_crop = float(meta["_ops"])  # torchvision counts multiply-adds at 224 × 224
        self.categories: list[str] = list(meta["categories"])
        self.variant = variant
        self.device = torch.device(device)
        self.crop_size = crop_size
        self.precision = precision
        self.runtime = "torch"
        self._openvino = None  # CompiledStage once `use_openvino` ran
        # channels_last lets oneDNN pick its fastest convolution kernels on CPU.
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255

    def preprocess(self, crops: list[np.ndarray]) -> torch.Tensor:
        size = (self.crop_size, self.crop_size)
        resized = np.stack([cv2.resize(c, size, interpolation=cv2.INTER_LINEAR) for c in crops])[..., ::-1]
        x = torch.from_numpy(np.ascontiguousarray(resized)).to(self.device).permute(0, 3, 1, 2).float()
        return ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.runtime == "openvino":
            return self._openvino(x).float()
        with forward_context(self.precision, self.device):
            return self.model(x).float()

    def use_openvino(self, cache_dir: Path, calibration_crops: list[np.ndarray]):
        """Run on OpenVINO from now on: this model in its precision, exported (int8: quantised on the crops) or
        taken from the cache. Returns the Export (where, and what it cost)."""
        from sustainable_ipa.models.openvino_runtime import (CompiledStage, ExportKey, convert_torch, export,
                                                             inputs_digest, library_versions, weights_digest)

        batches = [self.preprocess(calibration_crops[i:i + 8]).contiguous().numpy()
                   for i in range(0, len(calibration_crops), 8)] if self.precision == "int8" else []
        ir_precision = "int8" if self.precision == "int8" else "fp32"  # bf16 is a compile-time hint on the fp32 IR
        key = ExportKey(self.variant, ir_precision, weights_digest(self.model), inputs_digest(batches),
                        len(batches), tuple(sorted(library_versions().items())))
        example = self.preprocess(calibration_crops[:1] or [np.zeros((8, 8, 3), np.uint8)]).contiguous()
        made = export(key, cache_dir, convert_torch(self.model, example, ir_precision, batches))
        self.runtime, self._openvino = "openvino", CompiledStage(made.xml, self.precision)
        return made

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).argmax(dim=1)

    def __call__(self, crops: list[np.ndarray]) -> list[int]:
        return self.infer(self.preprocess(crops)).tolist()


def crop(image: np.ndarray, box_xyxy, min_side_px: int = 2) -> np.ndarray | None:
    """The box's pixels, clipped to the image; None when less than `min_side_px` remains on a side."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box_xyxy)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < min_side_px or y2 - y1 < min_side_px:
        return None
    return image[y1:y2, x1:x2]


def weights_url(variant: str) -> str:
    from torchvision.models import get_model_weights

    return get_model_weights(variant)["IMAGENET1K_V1"].url


def weights_file_name(variant: str) -> str:
    return weights_url(variant).rsplit("/", 1)[-1]


def classifier_fidelity(classifier: Classifier, crops: list[np.ndarray]) -> dict[str, float]:
    """Top-1 agreement and the mean cosine of logits against fp32, over `crops`."""
    x = classifier.preprocess(crops)
    low, reference = classifier.logits(x), fp32_twin(classifier).logits(x)
    return {"top1_agreement": float((low.argmax(1) == reference.argmax(1)).double().mean()),
            "logit_cosine_mean": float(cosines(low, reference).mean()),
            "items": float(len(crops))}


@lru_cache(maxsize=1)
def coco_to_imagenet() -> dict[str, tuple[str, ...]]:
    """COCO category name → the ImageNet class names that count as a correct top-1 for its crops."""
    return {k: tuple(v) for k, v in yaml.safe_load(MAPPING_FILE.read_text()).items()}


def mapped_top1(crop_categories: list[str], predicted: list[int], imagenet_names: list[str]) -> tuple[float, int]:
    """Top-1 accuracy over crops whose COCO category maps to ImageNet, and how many crops that was."""
    mapping = coco_to_imagenet()
    hits = [imagenet_names[p] in mapping[c] for c, p in zip(crop_categories, predicted) if c in mapping]
    return (float(np.mean(hits)) if hits else float("nan")), len(hits)


class ResNetParams(FamilySettings):
    crop_size: int = Field(ge=8, description="crops are resized to this square, pixels")


class Classify(StageModel):
    """Crops → per crop its class index; the last stage, it hands nothing on."""

    handoff: Handoff = "model"

    def __init__(self, classifier):
        self.classifier = classifier

    variant = property(lambda self: self.classifier.variant)
    precision = property(lambda self: self.classifier.precision)
    runtime = property(lambda self: self.classifier.runtime)

    def __call__(self, crops: list) -> list[ItemResult]:
        return [ItemResult(cls) for cls in self.classifier(crops)] if crops else []

    def fidelity(self, crops: list) -> dict[str, float]:
        return classifier_fidelity(self.classifier, crops) if crops else {}

    def use_openvino(self, cache_dir: Path, crops: list):
        return self.classifier.use_openvino(cache_dir, crops)

    def describe(self) -> dict[str, float]:
        return {"params": self.classifier.params, "gmacs_per_crop": self.classifier.gmacs_per_crop}

    def fp32_twin(self) -> "Classify":
        return Classify(fp32_twin(self.classifier))


class ResNet(ModelFamily):
    """torchvision's ResNet 18/34/50/101/152 (IMAGENET1K_V1), crops in, ImageNet classes out."""

    consumes, emits = "crop", None
    metric = "top1"
    metric_description = "ImageNet top-1 (%)"
    runtimes = ("torch", "openvino")
    Params = ResNetParams
    preload = ("cv2", "torchvision.models")

    def weights_source(self, variant: str, model) -> WeightsSource:
        name, url = weights_file_name(variant), weights_url(variant)
        return WeightsSource(name, url, (Path(torch.hub.get_dir()) / "checkpoints" / name,),
                             fetch=lambda destination: download_file(url, destination))

    def build(self, variant: str, model, weights: Path | None, precision: str, device: str,
              handoff: Handoff) -> Classify:
        return Classify(Classifier(variant, weights, self.params.crop_size, device, precision))

    def reference_handoffs(self, crop_) -> list:
        return []

    def accuracy(self, model: Classify, crops: list, dataset) -> dict[str, float]:
        """Top-1 on the dataset's ground-truth crops whose category maps to ImageNet (`crops` are those crops
        without their categories, so they are cut again here with them)."""
        pieces, names = [], []
        for frame in getattr(dataset, "frames", []):
            for gt in frame.ground_truth:
                if (piece := crop(frame.image_bgr, gt.box_xyxy)) is not None:
                    pieces.append(piece)
                    names.append(dataset.categories.get(gt.category_id, ""))
        if not pieces:
            return {}
        top1, scored = mapped_top1(names, model.classifier(pieces), model.classifier.categories)
        return {"top1": top1, "top1_crops": float(scored)} if scored else {}
