"""The OpenVINO runtime for a stage: the torch model converted once (for int8, quantised post-training by NNCF on
calibration inputs), cached on disk under a key of everything the file depends on, compiled in the process that
runs it with that process's thread count.

The cache entry is written into a temporary folder and renamed into place, so a failed or interrupted export leaves
nothing a later run could read. Library versions are part of the key: an IR written by another OpenVINO or NNCF is
never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sustainable_ipa.errors import UserError

# OpenVINO's own precision for what is not quantised: pinned, or it may pick bf16 by itself on CPUs that have it.
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def library_versions() -> dict[str, str]:
    import nncf
    import openvino

    return {"openvino": openvino.__version__, "nncf": nncf.__version__, "torch": torch.__version__}


def weights_digest(model: torch.nn.Module) -> str:
    """The model's weights, hashed: random weights of another seed or another pretrained file are another model."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def inputs_digest(batches: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for batch in batches:
        digest.update(np.ascontiguousarray(batch).tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ExportKey:
    """Everything an exported model depends on."""

    variant: str
    precision: str
    weights: str  # weights_digest
    calibration: str  # inputs_digest of the calibration inputs; "" without calibration
    calibration_items: int
    versions: tuple[tuple[str, str], ...]

    @property
    def folder_name(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return f"{self.variant}-{self.precision}-{hashlib.sha256(blob).hexdigest()[:16]}"


@dataclass(frozen=True)
class Export:
    """An exported model on disk, and what producing it cost (zero when it came from the cache)."""

    xml: Path
    key: ExportKey
    cached: bool
    wall_s: float
    cpu_s: float


def export(model: torch.nn.Module, example: torch.Tensor, key: ExportKey, cache_dir: Path,
           calibration: list[np.ndarray] | None) -> Export:
    """The cached IR for `key`, or a new one: converted from `model` (dynamic batch and image size), quantised to
    int8 on `calibration` when the key says int8."""
    import openvino as ov

    folder = Path(cache_dir) / key.folder_name
    xml = folder / "model.xml"
    if xml.is_file():
        return Export(xml, key, True, 0.0, 0.0)
    if key.precision == "int8" and not calibration:
        raise UserError(f"{key.variant} in int8 needs calibration inputs and the dataset gave none",
                        "use a dataset with images (the classifier calibrates on crops of its ground truth or of "
                        "the fp32 detector's boxes), or pass adaptation.<stage>.precision=fp32")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    wall, cpu = time.perf_counter(), time.process_time()
    staging = Path(tempfile.mkdtemp(prefix=f".{key.folder_name}-", dir=cache_dir))
    try:
        channels = example.shape[1]
        converted = ov.convert_model(model.eval(), example_input=example, input=[(-1, channels, -1, -1)])
        if key.precision == "int8":
            import nncf

            converted = nncf.quantize(converted, nncf.Dataset(calibration), subset_size=key.calibration_items)
        ov.save_model(converted, staging / "model.xml")
        (staging / "key.json").write_text(json.dumps(asdict(key), indent=1))
        try:
            os.rename(staging, folder)  # atomic: a reader sees the whole entry or none
        except OSError:  # another process exported the same key meanwhile: theirs is as good
            shutil.rmtree(staging, ignore_errors=True)
    except UserError:
        raise
    except Exception as err:
        raise UserError(f"exporting {key.variant} to OpenVINO {key.precision} failed: {type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}",
                        "pass adaptation.<stage>.runtime=torch, or report the error with the versions "
                        f"{dict(key.versions)}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return Export(xml, key, False, time.perf_counter() - wall, time.process_time() - cpu)


class CompiledStage:
    """An IR compiled on first use in the process that calls it (a compiled model does not pickle: each stage worker
    compiles its own, with its own torch thread count, on the cores it is pinned to)."""

    def __init__(self, xml: Path, precision: str):
        self.xml = Path(xml)
        self.precision = precision
        self._compiled = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled is None:
            import openvino as ov

            self._compiled = ov.Core().compile_model(str(self.xml), "CPU", {
                "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[self.precision],
                "INFERENCE_NUM_THREADS": torch.get_num_threads(),
                "ENABLE_CPU_PINNING": False})  # the worker is pinned by its affinity; OpenVINO must stay inside it
        return torch.from_numpy(self._compiled(x.contiguous().numpy())[0])

    def __getstate__(self) -> dict:
        return {"xml": self.xml, "precision": self.precision, "_compiled": None}
