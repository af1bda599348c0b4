"""The OpenVINO runtime for a stage: the torch model converted once (for int8, quantised post-training by NNCF on
calibration inputs), cached on disk under a key of everything the file depends on, compiled in the process that
runs it with that process's thread count. How a stage is converted is its family's `build` (ResNet:
`convert_torch`; YOLOv5: ultralytics' exporter; the transformers families their own); the cache is shared.

The cache entry is written into a temporary folder and renamed into place, so a failed or interrupted export leaves
nothing a later run could read. Library versions are part of the key: an IR written by another OpenVINO or NNCF is
never reused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sustainable_ipa.errors import UserError

# OpenVINO's own precision for what is not quantised: pinned, or it may pick bf16 by itself on CPUs that have it.
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


@functools.cache
def openvino_core():
    """This process's one OpenVINO `Core`, kept for its whole life.

    OpenVINO's CPU plugin moves the main thread's alternate signal stack when a Core loads it and moves it back when
    that Core goes; Cores that go in another order than they came (one per compiled model, NNCF's own) left it
    pointing into freed memory (OpenVINO 2026.4). Python runs its signal handlers on that stack, so the next Ctrl-C
    or SIGTERM crashed the process (SIGSEGV) instead of ending its run KILLED. One Core made before any other and
    never released keeps the stack valid; it is also what OpenVINO advises (a Core is heavy)."""
    import openvino as ov

    return ov.Core()


def library_versions() -> dict[str, str]:
    import nncf
    import openvino

    # "export" is this module's own layout: bumped when what an entry holds changes (2: fp32 weights no longer
    # stored as fp16), so that older entries are not reused.
    return {"openvino": openvino.__version__, "nncf": nncf.__version__, "torch": torch.__version__, "export": "2"}


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
        name = re.sub(r"[^\w.-]", "_", self.variant)  # a hub id's "/" is no folder of the cache
        return f"{name}-{self.precision}-{hashlib.sha256(blob).hexdigest()[:16]}"


@dataclass(frozen=True)
class Export:
    """An exported model on disk, and what producing it cost (zero when it came from the cache)."""

    xml: Path  # the entry's main file (its folder is the whole entry)
    key: ExportKey
    cached: bool
    wall_s: float
    cpu_s: float

    def line(self, stage: str) -> str:
        """What the console says of a new export: one line, the libraries' output being in its log."""
        return (f"OpenVINO: exported {stage} {self.key.variant} {self.key.precision} in {self.wall_s:.0f} s (the "
                f"converters' output: {self.xml.parent / 'export.log'})")


def export(key: ExportKey, cache_dir: Path, build: Callable[[Path], None], main_file: str = "model.xml") -> Export:
    """The cached IR for `key`, or a new one: `build(folder)` writes `main_file` (`model.xml` and `model.bin`; an
    optimum-intel export writes a folder of IRs and configs, named by one of its files) into an empty staging
    folder, which becomes the cache entry only once complete."""
    folder = Path(cache_dir) / key.folder_name
    xml = folder / main_file
    if xml.is_file():
        return Export(xml, key, True, 0.0, 0.0)
    openvino_core()  # before the converters' and NNCF's own Cores come and go
    if key.precision == "int8" and not key.calibration_items:
        raise UserError(f"{key.variant} in int8 needs calibration inputs and the dataset gave its stage none",
                        "use a dataset whose items reach that stage (with references, or pretrained weights "
                        "upstream), or pass adaptation.<stage>.precision=fp32")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    wall, cpu = time.perf_counter(), time.process_time()
    staging = Path(tempfile.mkdtemp(prefix=f".{key.folder_name}-", dir=cache_dir))
    try:
        with library_output_to(staging / "export.log"):  # hundreds of lines of converter and NNCF output
            build(staging)
        if not (staging / main_file).is_file():
            raise RuntimeError(f"the export wrote no {main_file}")
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


def openvino_telemetry_off() -> None:
    """Turns off, for this process, the usage telemetry OpenVINO's converter and NNCF send unless a user opted out
    (`opt_in_out --opt_out`). It sends each event from a process forked off a thread, and that fork can leave OpenBLAS
    in this process spinning for ever in its next matrix product: the Speech2Text feature extractor hung after an
    export. Both use one `openvino_telemetry.Telemetry` instance per process, made here if it does not exist yet."""
    try:
        from openvino_telemetry import Telemetry
    except ImportError:  # without it, OpenVINO sends nothing
        return
    Telemetry(app_name="sustainable-ipa", app_version="0", tid=None, enable_opt_in_dialog=True).consent = False


@contextlib.contextmanager
def library_output_to(log: Path):
    """Everything the exporting libraries print goes to `log`, not to the console: their Python logging (INFO and
    above; torch.export's DEBUG trace of every graph is dropped: formatting it for a handler that keeps every record,
    as pytest's does, took minutes), their warnings, what they print through Python's `sys.stdout` and `sys.stderr`
    (NNCF's progress bars), and what their C++ writes to the process's stdout and stderr."""
    log.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handlers = root.handlers[:]
    with open(log, "ab") as sink, open(log, "a", encoding="utf-8") as text, warnings.catch_warnings(), \
            contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
        warnings.simplefilter("ignore")
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        sys.stdout.flush()
        sys.stderr.flush()
        file_handler = logging.FileHandler(log)
        try:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            root.handlers[:] = [file_handler]
            logging.disable(logging.DEBUG)
            openvino_telemetry_off()
            yield
        finally:
            logging.disable(logging.NOTSET)
            root.handlers[:] = handlers
            file_handler.close()
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def convert_torch(model: torch.nn.Module, example: torch.Tensor, precision: str,
                  calibration: list[np.ndarray]) -> Callable[[Path], None]:
    """A `build` for `export`: the model converted by `ov.convert_model` (dynamic batch and image size) and, for
    int8, quantised by NNCF on `calibration` (one item per batch)."""

    def build(folder: Path) -> None:
        import openvino as ov

        channels = example.shape[1]
        converted = ov.convert_model(model.eval(), example_input=example, input=[(-1, channels, -1, -1)])
        if precision == "int8":
            import nncf

            converted = nncf.quantize(converted, nncf.Dataset(calibration), subset_size=len(calibration))
        # save_model rounds weights to fp16 unless told not to: the fp32 IR must hold the fp32 weights.
        ov.save_model(converted, folder / "model.xml", compress_to_fp16=False)

    return build


class CompiledStage:
    """An IR compiled on first use in the process that calls it (a compiled model does not pickle: each stage worker
    compiles its own, with its own torch thread count, on the cores it is pinned to)."""

    def __init__(self, xml: Path, precision: str):
        self.xml = Path(xml)
        self.precision = precision
        self._compiled = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled is None:
            self._compiled = openvino_core().compile_model(str(self.xml), "CPU", {
                "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[self.precision],
                "INFERENCE_NUM_THREADS": torch.get_num_threads(),
                "ENABLE_CPU_PINNING": False})  # the worker is pinned by its affinity; OpenVINO must stay inside it
        return torch.from_numpy(self._compiled(x.detach().cpu().contiguous().numpy())[0])  # OpenVINO runs on the CPU

    def __getstate__(self) -> dict:
        return {"xml": self.xml, "precision": self.precision, "_compiled": None}
