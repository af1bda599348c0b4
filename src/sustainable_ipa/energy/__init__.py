"""Energy measurement: one small window API over several meter backends, idle baseline, carbon, the machine lock.

    meter = make_meter(cfg.energy, cfg.hardware)
    meter.begin_window("trial")
    ...
    measurement = meter.end_window("trial")   # Measurement(duration_s, energy_j per domain, source)
"""

from sustainable_ipa.energy.measurement import EnergySource, Measurement, PowerSample
from sustainable_ipa.energy.meter import Meter, MeterUnavailable

__all__ = ["EnergySource", "Measurement", "Meter", "MeterUnavailable", "PowerSample"]
