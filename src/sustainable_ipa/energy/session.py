"""What a run holds while it measures energy: the machine lock, the meter, the idle baseline, the carbon figure."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from omegaconf import DictConfig

from sustainable_ipa.energy.carbon import carbon_intensity_g_per_kwh
from sustainable_ipa.energy.factory import make_meter
from sustainable_ipa.energy.estimate import EstimateMeter
from sustainable_ipa.energy.idle import idle_power_w
from sustainable_ipa.energy.lock import MachineLock
from sustainable_ipa.energy.measurement import EnergySource, Measurement, PowerSample
from sustainable_ipa.energy.meter import Meter, MeterUnavailable
from sustainable_ipa.energy.power_curve import LoadSample
from sustainable_ipa.fingerprint import this_machine


@dataclass
class Window:
    """Filled when the `with` block ends."""

    measurement: Measurement | None = None
    cross_check: Measurement | None = None
    samples: list[PowerSample] = field(default_factory=list)
    load_samples: list[LoadSample] = field(default_factory=list)  # where the energy is modelled from the load
    start_s: float = 0.0


def estimate_line(model_tags: dict[str, str]) -> str:
    """What the estimate is, in one line for the console: its model, where its data come from, its interval."""
    if not model_tags:
        return "no power model"
    line = f"power model {model_tags['power_model']} ({model_tags['power_model_source']})"
    if "power_model_range" in model_tags:
        line += f", interval *_low … *_high from {model_tags['power_model_range']}"
    return line


class EnergySession:
    """Open with `with EnergySession(cfg.energy, cfg.hardware) as energy:`; windows via `energy.window(name)`."""

    def __init__(self, energy: DictConfig, hardware: DictConfig, warn: Callable[[str], None] | None = None):
        self.cfg = energy
        self.hardware = hardware
        self.warn = warn
        self.lock = MachineLock(energy.lock_path, float(energy.lock_wait_s), on_wait=warn)
        self.meter: Meter | None = None
        self.cross_meter: Meter | None = None
        self.idle_power_w = 0.0
        self.idle_cached = False
        self.carbon_intensity_g_per_kwh = carbon_intensity_g_per_kwh(
            energy.carbon_intensity_g_per_kwh, hardware.carbon.country_iso_code, hardware.carbon.region)
        self.pue = float(hardware.pue)

    def __enter__(self) -> "EnergySession":
        self.lock.acquire()
        try:
            self.meter = make_meter(self.cfg, self.hardware, self.warn)
            if self.cfg.compare == "codecarbon" and self.meter.source != EnergySource.CODECARBON:
                from sustainable_ipa.energy.codecarbon_meter import CodeCarbonMeter

                try:
                    self.cross_meter = CodeCarbonMeter(self.hardware.carbon.country_iso_code, self.hardware.carbon.region)
                except MeterUnavailable as err:
                    if self.warn:
                        self.warn(f"energy.compare=codecarbon: {err}; its figures are left out")
            if self.meter.source == EnergySource.ESTIMATE:
                # the model's static power is its idle baseline: nothing to measure, and no cache to poison
                self.idle_power_w = self.meter.curve.static_w if float(self.cfg.idle_s) > 0 else 0.0
            else:
                self.idle_power_w, self.idle_cached = idle_power_w(
                    self.meter, float(self.cfg.idle_s), self.cfg.idle_cache, float(self.cfg.idle_cache_s),
                    self.idle_key(), warn=self.warn)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for meter in (self.cross_meter, self.meter):
            if meter is not None:
                meter.close()
        self.lock.release()

    @property
    def source_tag(self) -> str:
        sources = getattr(self.meter, "sources", None)
        return "+".join(sources) if sources else self.meter.source.value

    def idle_key(self) -> str:
        """What a measured idle baseline depends on: where it was measured and with which meter."""
        model = self.meter.tags.get("power_model_source")  # a modelled part's idle power follows its curve
        return f"{this_machine().key} / {self.source_tag}" + (f" / {model}" if model else "")

    @property
    def idle_baseline(self) -> str:
        """none | modelled (the estimate's static power) | measured | cached (measured earlier, same key)."""
        if float(self.cfg.idle_s) <= 0:
            return "none"
        if self.meter.source == EnergySource.ESTIMATE:
            return "modelled"
        return "cached" if self.idle_cached else "measured"

    def tags(self) -> dict[str, str]:
        tags = {"energy_source": self.source_tag, "idle_baseline": self.idle_baseline,
                "machine": this_machine().key}  # what the figures were measured on: CPU model, its flags, cores
        if self.meter.fallback_reason:
            tags["energy_fallback"] = self.meter.fallback_reason
        return {**tags, **self.meter.tags}

    @contextmanager
    def window(self, name: str) -> Iterator[Window]:
        import time

        self.meter.begin_window(name)
        result = Window(start_s=time.perf_counter())  # after the poll that opens the window: its sample is before
        if self.cross_meter:
            self.cross_meter.begin_window(name)
        try:
            yield result
        finally:
            result.measurement = self.meter.end_window(name)
            end_s = time.perf_counter()  # after the poll that closes the window: its sample is inside
            if self.cross_meter:
                result.cross_check = self.cross_meter.end_window(name)
            result.samples = self.meter.samples(result.start_s, end_s)
            if isinstance(self.meter, EstimateMeter):
                result.load_samples = self.meter.load_samples(result.start_s, end_s)
