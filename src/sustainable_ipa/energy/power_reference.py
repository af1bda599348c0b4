"""The estimate's power curves from the field's reference data, for the CPU in the machine's fingerprint.

Central: Boavizta's CPU consumption profile (its log curve fitted to Teads' 0.12 / 0.32 / 0.75 / 1.02 × TDP at
0 / 10 / 50 / 100 % load, computed by `boaviztapi` itself) for the CPU's thermal design power per hardware thread,
times the vCPUs the run may use (Boavizta's cloud share: vCPUs ÷ the server's threads), plus memory by Boavizta's
DIMM model. The model interval is the envelope of what the reference data also allows:

- the same curve at the lower and upper quartile of TDP per thread among the CPU generation's parts
  (`boaviztapi`'s cpu_specs.csv: a VM's CPU name rarely names its part, "AMD EPYC" here);
- the curve's straight line (linear in load between the curve's ends: curve vs linear);
- Cloud Carbon Footprint's linear min–max W per vCPU for the microarchitecture, and its 0.392 W per GB of memory.

The generation is the part's code name where the fingerprint names a part boaviztapi lists, else inferred from the
instruction-set flags (AVX512-BF16 on AMD: Zen 4 Genoa; AMX on Intel: Sapphire Rapids).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import yaml

from sustainable_ipa.energy.power_curve import PowerCurve, from_function
from sustainable_ipa.fingerprint import Fingerprint

CCF = yaml.safe_load((Path(__file__).parent / "reference" / "ccf.yaml").read_text())
# Generations a VM's CPU is inferred as when its name names no part, by vendor and flags (first match).
BY_FLAGS = (("AMD", "avx512_bf16", "Genoa"), ("AMD", "avx2", "Milan"),
            ("Intel", "amx_bf16", "Sapphire Rapids"), ("Intel", "avx512_vnni", "Cascade Lake"))


@dataclass(frozen=True)
class Generation:
    code_name: str  # as boaviztapi's cpu_specs.csv names it, or "unknown"
    part: str | None  # the part the fingerprint names, where boaviztapi lists it
    how: str  # how it was found, for the tags


@dataclass(frozen=True)
class PowerModel:
    """The curve the estimate uses, the ones its interval spans, and what to tag the run with."""

    curve: PowerCurve
    alternatives: tuple[PowerCurve, ...]
    tags: dict[str, str]


@lru_cache(maxsize=1)
def _cpu_specs():
    import boaviztapi
    import pandas as pd

    specs = pd.read_csv(Path(boaviztapi.data_dir) / "crowdsourcing" / "cpu_specs.csv")
    return specs[(specs.tdp > 0) & (specs.threads > 0)]


def _normalised(name: str) -> str:
    return " ".join(name.replace("(R)", "").replace("(TM)", "").replace("CPU", "").split()).lower()


def cpu_generation(fingerprint: Fingerprint) -> Generation:
    specs = _cpu_specs()
    model = _normalised(fingerprint.cpu_model)
    names = specs.name.map(_normalised)
    # the longest listed name the model starts with ("amd epyc 7763 64-core processor" → "amd epyc 7763")
    hits = specs[[model == n or model.startswith(n + " ") for n in names]]
    if len(hits):
        part = hits.loc[hits.name.str.len().idxmax()]
        return Generation(str(part.code_name), str(part["name"]), "named by the CPU model")
    vendor = "AMD" if "amd" in model else "Intel" if "intel" in model else None
    for maker, flag, code_name in BY_FLAGS:
        if maker == vendor and flag in fingerprint.flags:
            return Generation(code_name, None, f"{maker} with {flag}")
    return Generation("unknown", None, "neither a listed part nor known flags")


def tdp_per_thread_w(generation: Generation) -> tuple[float, float, float]:
    """(lower quartile, central, upper quartile) of TDP per hardware thread, W: the part's own as central where
    it is named; the generation's median otherwise (all server parts for an unknown generation)."""
    specs = _cpu_specs()
    rows = specs[specs.code_name == generation.code_name]
    if not len(rows):
        rows = specs[specs.name.str.contains("EPYC|Xeon", regex=True)]
    per_thread = (rows.tdp / rows.threads).to_numpy()
    low, median, high = np.percentile(per_thread, [25, 50, 75])
    if generation.part is not None:
        part = specs[specs.name == generation.part].iloc[0]
        median = part.tdp / part.threads
    return float(min(low, median)), float(median), float(max(high, median))


@lru_cache(maxsize=8)
def _teads_shape(manufacturer: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Boavizta's fitted curve per watt of TDP at 101 loads (`from_function`): its fit scales with the TDP, so one
    shape serves every TDP."""
    from boaviztapi.models.consumption_profile.consumption_profile import CPUConsumptionProfileModel

    tdp_w = 100.0
    model = CPUConsumptionProfileModel()
    with warnings.catch_warnings():  # scipy's covariance warning on a 4-point, 4-parameter fit
        warnings.simplefilter("ignore")
        model.compute_consumption_profile_model(cpu_manufacturer=manufacturer, cpu_tdp=tdp_w)
    shape = from_function("shape", "", lambda u: model.apply_consumption_profile(100.0 * u) / tdp_w, 0.0)
    return shape.loads, shape.cpu_w


def _boavizta_memory_w(code_name: str, memory_gib: float) -> float:
    """Boavizta's DIMM model at idle (memory load is not measured): per-DIMM watts of the generation's memory type
    at its typical DIMM size, times the number of such DIMMs the memory would fill."""
    from boaviztapi.models.consumption_profile.consumption_profile import RAMConsumptionProfileModel

    ram = RAMConsumptionProfileModel()
    capacity = ram.typical_dimm_capacity[ram.memory_type_from_cpu_family(code_name)]
    ram.compute_consumption_profile_model(ram_capacity=capacity)
    return ram.apply_consumption_profile(0.0) * memory_gib / capacity


def reference_model(fingerprint: Fingerprint) -> PowerModel:
    generation = cpu_generation(fingerprint)
    vcpus, memory_gib = fingerprint.cores, float(fingerprint.memory_gib or 0)
    manufacturer = "AMD" if "amd" in fingerprint.cpu_model.lower() else "Intel"
    loads, shape = _teads_shape(manufacturer)
    low_w, central_w, high_w = tdp_per_thread_w(generation)
    memory_w = _boavizta_memory_w(generation.code_name, memory_gib)
    version = metadata.version("boaviztapi")

    def teads(name: str, w_per_thread: float) -> PowerCurve:
        return PowerCurve(name, f"boaviztapi {version}, {w_per_thread:.2f} W TDP per thread",
                          loads, tuple(f * w_per_thread * vcpus for f in shape), memory_w)

    curve = teads("boavizta", central_w)
    ccf_min, ccf_max = CCF["w_per_vcpu"].get(generation.code_name, CCF["w_per_vcpu"]["unknown"])
    ccf = from_function("ccf", CCF["source"], lambda u: vcpus * (ccf_min + u * (ccf_max - ccf_min)),
                        CCF["memory_w_per_gb"] * memory_gib, points=2)
    straight = PowerCurve("boavizta-linear", curve.source, (0.0, 1.0), (curve.cpu_w[0], curve.cpu_w[-1]), memory_w)
    tags = {"power_model": "boavizta", "power_model_source": curve.source,
            "power_model_cpu": f"{generation.code_name} ({generation.part or generation.how})",
            "power_model_range": "TDP per thread quartiles, curve vs linear, Cloud Carbon Footprint min-max"}
    return PowerModel(curve, (teads("boavizta-q1", low_w), teads("boavizta-q3", high_w), straight, ccf), tags)


def constants_model(active_w_per_core: float, idle_w: float, vcpus: int) -> PowerModel:
    """The old estimate, kept as one named model: `idle_w` always, plus `active_w_per_core` per busy vCPU."""
    curve = PowerCurve("constants", "hardware.estimate (assumed constants, no reference data)", (0.0, 1.0),
                       (idle_w, idle_w + active_w_per_core * vcpus))
    return PowerModel(curve, (), {"power_model": "constants", "power_model_source": curve.source})


def ccf_model(fingerprint: Fingerprint) -> PowerModel:
    """Cloud Carbon Footprint's linear model as the estimate, with the reference curves as its interval."""
    reference = reference_model(fingerprint)
    ccf = next(c for c in reference.alternatives if c.name == "ccf")
    others = (reference.curve, *(c for c in reference.alternatives if c is not ccf))
    return PowerModel(ccf, others, {**reference.tags, "power_model": "ccf", "power_model_source": ccf.source})
