"""`python src/calibrate.py`: this CPU's power curve from its counters, stored for every machine with its CPU model."""

from __future__ import annotations

import os
from datetime import datetime, timezone

from omegaconf import DictConfig, OmegaConf

from sustainable_ipa.energy.calibration import LOAD_LEVELS, Calibration, HeldLoad, fit, load_pairs, save
from sustainable_ipa.energy.estimate import vcpus_busy_s
from sustainable_ipa.energy.factory import make_meter
from sustainable_ipa.energy.lock import MachineLock
from sustainable_ipa.energy.measurement import EnergySource
from sustainable_ipa.energy.meter import Meter
from sustainable_ipa.errors import UserError
from sustainable_ipa.fingerprint import this_machine


def calibrate_job(cfg: DictConfig, meter: Meter | None = None, hold_load=HeldLoad,
                  busy_cpu_s=vcpus_busy_s) -> Calibration:
    """`meter`, `hold_load` and `busy_cpu_s` stand in for the machine in tests (a fake powercap tree and clock)."""
    fingerprint = this_machine()
    dwell_s = float(cfg.energy.calibration_dwell_s)
    with MachineLock(cfg.energy.lock_path, float(cfg.energy.lock_wait_s)):
        meter = meter or make_meter(OmegaConf.merge(cfg.energy, {"fallback": "error"}), cfg.hardware)
        try:
            if meter.source not in (EnergySource.RAPL, EnergySource.PYRAPL):  # NVML, a composite with it, estimates
                raise UserError(f"energy.meter={cfg.energy.meter} reads no CPU package counter here "
                                f"({meter.source.value}): a CPU's curve is fitted to RAPL only",
                                "run src/calibrate.py on a machine with RAPL (energy.meter=rapl); VMs of the same CPU "
                                "model then use its curve")
            if fingerprint.cores != (os.cpu_count() or fingerprint.cores):
                raise UserError(f"this process may use {fingerprint.cores} of the machine's {os.cpu_count()} CPUs, and "
                                "the package counter reads them all", "calibrate with the whole machine: no CPU "
                                "affinity, no container CPU quota")
            print(f"calibrating {fingerprint.cpu_model} on {fingerprint.cores} vCPUs with {meter.source.value}: "
                  f"{len(LOAD_LEVELS)} loads × {dwell_s + 1:.0f} s ≈ {len(LOAD_LEVELS) * (dwell_s + 1):.0f} s")
            pairs = load_pairs(meter, lambda level: hold_load(level, fingerprint.cores), busy_cpu_s,
                               fingerprint.cores, dwell_s,
                               on_pair=lambda u, w: print(f"  load {u:6.1%}: {w:7.2f} W", flush=True))
        finally:
            meter.close()
    loads, watts, max_error = fit(pairs)
    calibration = Calibration(fingerprint.cpu_model, fingerprint.key, fingerprint.cores, loads, watts, max_error,
                              datetime.now(timezone.utc).isoformat(timespec="seconds"))
    save(cfg.energy.calibration, calibration)
    print(f"curve saved to {cfg.energy.calibration} (largest error over the pairs {max_error:.1%}); the estimate on "
          f"any machine whose CPU is {fingerprint.cpu_model!r} now uses it, tagged power_model=calibrated")
    return calibration
