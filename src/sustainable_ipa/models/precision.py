"""Numeric precision of a stage's forward pass: what each choice needs from the CPU, and the context it runs in.

bf16 is `torch.autocast`: weights stay fp32, oneDNN runs convolutions and matmuls in bf16 on CPUs that have
`avx512_bf16` or `amx_bf16` and emulates them (slower than fp32) on others, so those are refused unless the user
opts in (`hardware.allow_emulated`, tagged `emulated=true`). int8 is NNCF's post-training quantisation run by
OpenVINO (`openvino_runtime.py`), native with VNNI or AMX."""

from __future__ import annotations

import contextlib

import torch

from sustainable_ipa.errors import UserError
from sustainable_ipa.fingerprint import Fingerprint

# Any one of these flags runs the precision natively.
NATIVE_FLAGS = {"fp32": (), "bf16": ("avx512_bf16", "amx_bf16"), "int8": ("avx512_vnni", "avx_vnni", "amx_int8")}


def missing_feature(precision: str, machine: Fingerprint) -> str | None:
    """The CPU feature a precision lacks on this machine (its alternatives joined by 'or'), or None."""
    needed = NATIVE_FLAGS[precision]
    if not needed or any(flag in machine.flags for flag in needed):
        return None
    return " or ".join(needed)


def emulated_stages(precisions: dict[str, str], machine: Fingerprint, allow_emulated: bool) -> list[str]:
    """The stages whose precision this CPU would emulate; refused with one line unless `allow_emulated`."""
    emulated = []
    for stage, precision in precisions.items():
        lacking = missing_feature(precision, machine)
        if lacking is None:
            continue
        if not allow_emulated:
            raise UserError(f"adaptation.{stage}.precision={precision} needs {lacking}, which this CPU "
                            f"({machine.cpu_model}) lacks: it would be emulated, slower than fp32",
                            f"pass adaptation.{stage}.precision=fp32, run it on a CPU with {lacking}, or pass "
                            "hardware.allow_emulated=true to measure the emulation (tagged emulated=true)")
        emulated.append(stage)
    return emulated


def forward_context(precision: str, device: torch.device):
    """The context a stage's forward pass runs in."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
