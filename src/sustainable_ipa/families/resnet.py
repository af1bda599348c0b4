"""The classifier stage: a torchvision ResNet on crops resized to a square, ImageNet normalisation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from sustainable_ipa.models.precision import forward_context

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
            model.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
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
