"""Several meters read as one: e.g. the CPU through RAPL or the estimate and the GPU through NVML."""

from __future__ import annotations

import math

from sustainable_ipa.energy.measurement import Measurement, PowerSample
from sustainable_ipa.energy.meter import Meter


class CompositeMeter(Meter):
    """Measurements merged by domain; the meters must measure disjoint domains. `source` is the first meter's."""

    def __init__(self, meters: list[Meter]):
        self.meters = meters
        self.source = meters[0].source
        self.fallback_reason = next((m.fallback_reason for m in meters if m.fallback_reason), None)
        self.tags = {k: v for m in meters for k, v in m.tags.items()}

    @property
    def concurrent_windows(self) -> bool:
        return all(m.concurrent_windows for m in self.meters)

    @property
    def sources(self) -> list[str]:
        return [m.source.value for m in self.meters]

    def begin_window(self, name: str) -> None:
        for meter in self.meters:
            meter.begin_window(name)

    def end_window(self, name: str) -> Measurement:
        parts = [meter.end_window(name) for meter in self.meters]
        energy = {k: v for part in parts for k, v in part.energy_j.items()}
        duration_s = max(p.duration_s for p in parts)
        # a modelled part's interval: each of its curves in place of its central figures, the measured parts kept
        alternatives = tuple(Measurement(duration_s, {**energy, **alt.energy_j}, self.source, model=alt.model,
                                         static_shift_w=(alt.static_w or 0.0) - (part.static_w or 0.0))
                             for part in parts for alt in part.alternatives)
        return Measurement(duration_s, energy, self.source, alternatives=alternatives)

    def samples(self, start_s: float = -math.inf, end_s: float = math.inf) -> list[PowerSample]:
        return sorted((s for m in self.meters for s in m.samples(start_s, end_s)), key=lambda s: s.time_s)

    def close(self) -> None:
        for meter in self.meters:
            meter.close()
