"""CodeCarbon's `OfflineEmissionsTracker` as a meter: no network, country/region from the hardware config.

CodeCarbon isolates one task at a time, so this meter's windows may not overlap. It reads RAPL where it can;
on machines without RAPL it estimates from CPU load and a power table (here: 4 W per thread for an unknown CPU)
plus a RAM estimate, which is why `auto` does not prefer it over the project's own estimate.
"""

from __future__ import annotations

import logging
import time

from sustainable_ipa.energy.carbon import J_PER_KWH
from sustainable_ipa.energy.measurement import EnergySource, Measurement
from sustainable_ipa.energy.meter import Meter, MeterUnavailable


class CodeCarbonMeter(Meter):
    source = EnergySource.CODECARBON

    def __init__(self, country_iso_code: str, region: str | None = None, measure_power_s: float = 1.0):
        try:
            from codecarbon import OfflineEmissionsTracker

            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            self.tracker = OfflineEmissionsTracker(
                country_iso_code=country_iso_code, region=region, save_to_file=False, log_level="error",
                measure_power_secs=measure_power_s, allow_multiple_runs=True, tracking_mode="machine")
        except Exception as err:
            raise MeterUnavailable(f"CodeCarbon cannot start ({type(err).__name__}: {str(err)[:120]})",
                                   "pass energy.meter=estimate") from None
        self._open: dict[str, float] = {}

    concurrent_windows = False  # one CodeCarbon task at a time

    def begin_window(self, name: str) -> None:
        if self._open:
            raise RuntimeError(f"CodeCarbon measures one window at a time; {next(iter(self._open))!r} is open")
        self._open[name] = time.perf_counter()
        self.tracker.start_task(name)

    def end_window(self, name: str) -> Measurement:
        started = self._open.pop(name)
        data = self.tracker.stop_task(name)
        duration_s = time.perf_counter() - started
        if data is None:
            raise MeterUnavailable("CodeCarbon returned no measurement", "pass energy.meter=estimate")
        energy = {"cpu": data.cpu_energy * J_PER_KWH, "dram": data.ram_energy * J_PER_KWH}
        if data.gpu_energy:
            energy["gpu"] = data.gpu_energy * J_PER_KWH
        return Measurement(duration_s, energy, self.source)

    def close(self) -> None:
        for name in list(self._open):
            self.end_window(name)
