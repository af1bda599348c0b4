"""`energy.meter` → a Meter. `auto` takes the best readable counter; nothing readable → the estimate, recorded."""

from __future__ import annotations

import sys
from typing import Callable

from omegaconf import DictConfig

from sustainable_ipa.energy.calibration import calibration_for
from sustainable_ipa.energy.estimate import EstimateMeter, watched_cpus
from sustainable_ipa.energy.meter import CounterMeter, Meter, MeterUnavailable
from sustainable_ipa.energy.power_reference import PowerModel, ccf_model, constants_model, reference_model
from sustainable_ipa.errors import UserError
from sustainable_ipa.fingerprint import this_machine
from sustainable_ipa.schema import METERS  # the choices are declared with the setting


def estimate_model(energy: DictConfig, hardware: DictConfig, warn: Callable[[str], None] | None = None) -> PowerModel:
    """The power model of `energy.power_model`; a calibration of this CPU model, where one is stored, before
    the reference data (`constants` is always what it says)."""
    fingerprint = this_machine()
    if energy.power_model == "constants":
        return constants_model(float(hardware.estimate.active_w_per_core), float(hardware.estimate.idle_w),
                               fingerprint.cores)
    calibration = calibration_for(energy.calibration, fingerprint, warn)
    if calibration is not None:
        return calibration.model(fingerprint.cores)
    return ccf_model(fingerprint) if energy.power_model == "ccf" else reference_model(fingerprint)


def estimate_meter(energy: DictConfig, hardware: DictConfig, warn: Callable[[str], None] | None = None) -> EstimateMeter:
    model = estimate_model(energy, hardware, warn)
    return EstimateMeter(model.curve, model.alternatives, this_machine().cores, float(energy.poll_interval_s),
                         tags=model.tags, watched=len(watched_cpus()))


def _builders(energy: DictConfig, hardware: DictConfig, warn: Callable[[str], None]) -> dict[str, Callable[[], Meter]]:
    from sustainable_ipa.energy.codecarbon_meter import CodeCarbonMeter
    from sustainable_ipa.energy.nvml import NvmlReader
    from sustainable_ipa.energy.pyrapl_reader import PyRaplReader
    from sustainable_ipa.energy.rapl import RaplReader

    poll = float(energy.poll_interval_s)
    return {
        "rapl": lambda: CounterMeter(RaplReader(energy.rapl_root), poll),
        "pyrapl": lambda: CounterMeter(PyRaplReader(), poll),
        "nvml": lambda: CounterMeter(NvmlReader(tuple(energy.gpu_indices)), poll),
        "codecarbon": lambda: CodeCarbonMeter(hardware.carbon.country_iso_code, hardware.carbon.region),
        "estimate": lambda: estimate_meter(energy, hardware, warn),
    }


def make_meter(energy: DictConfig, hardware: DictConfig, warn: Callable[[str], None] | None = None) -> Meter:
    """The meter `energy.meter` names.

    auto: RAPL when its counters are readable, else the estimate (CodeCarbon is not preferred: without RAPL it
    estimates too, from a power table rather than this CPU's curve); on `hardware.device=cuda`
    NVML is added for the GPU. An explicit meter that cannot read: one warning line naming why and the fix, then
    `energy.fallback` (estimate) or, with `energy.fallback=error`, that line as the error. Either way the
    fallback is recorded on the meter (`fallback_reason`).
    """
    warn = warn or (lambda line: print(f"warning: {line}", file=sys.stderr))
    if energy.meter not in METERS:
        raise UserError(f"unknown energy.meter '{energy.meter}'", f"choose one of {', '.join(METERS)}")
    builders = _builders(energy, hardware, warn)
    if energy.meter == "auto":
        try:
            cpu = builders["rapl"]()
        except MeterUnavailable as err:
            cpu = builders["estimate"]()
            cpu.fallback_reason = f"no readable RAPL: {err.problem}"
        if hardware.device != "cuda":
            return cpu
        from sustainable_ipa.energy.composite import CompositeMeter

        return CompositeMeter([builders["nvml"](), cpu])
    try:
        return builders[energy.meter]()
    except MeterUnavailable as err:
        if energy.fallback == "error":
            raise
        warn(f"{err}. Falling back to energy.meter={energy.fallback}")
        meter = builders[energy.fallback]()
        meter.fallback_reason = f"energy.meter={energy.meter} unavailable: {err.problem}"
        return meter
