"""GPU energy through NVML.

`nvmlDeviceGetTotalEnergyConsumption` (mJ since the driver loaded, Volta and later) is the trustworthy counter.
On older GPUs only `nvmlDeviceGetPowerUsage` (mW) exists; it is integrated between polls, and under-reads short
kernels: recent drivers average it over about a second, and on A100/H100 only part of the time is sampled.
"""

from __future__ import annotations

import time
from typing import Callable

from sustainable_ipa.energy.measurement import EnergySource
from sustainable_ipa.energy.meter import CounterReader, MeterUnavailable


def _load_pynvml():
    try:
        import pynvml
    except ImportError:
        raise MeterUnavailable("NVML is not installed", "pip install nvidia-ml-py, or pass energy.meter=estimate") from None
    return pynvml


class NvmlReader(CounterReader):
    source = EnergySource.NVML

    def __init__(self, gpu_indices=(0,), nvml=None, clock: Callable[[], float] = time.perf_counter):
        self.nvml = nvml or _load_pynvml()
        self._clock = clock
        try:
            self.nvml.nvmlInit()
            self.handles = {i: self.nvml.nvmlDeviceGetHandleByIndex(i) for i in gpu_indices}
        except Exception as err:
            raise MeterUnavailable(f"NVML cannot open GPU(s) {list(gpu_indices)} ({err})",
                                   "check the driver and energy.gpu_indices, or pass energy.meter=estimate") from None
        self.counter = {}
        for i, handle in self.handles.items():
            try:
                self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                self.counter[i] = True
            except Exception:  # NVMLError_NotSupported before Volta: fall back to integrating power
                self.counter[i] = False
        self._integrated = {i: 0.0 for i in self.handles}
        self._last_time = clock()

    @property
    def integrates_power(self) -> bool:
        return not all(self.counter.values())

    def read_j(self) -> dict[str, float]:
        now = self._clock()
        dt, self._last_time = now - self._last_time, now
        out = {}
        for i, handle in self.handles.items():
            if self.counter[i]:
                out[f"gpu/{i}"] = self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3
            else:
                self._integrated[i] += self.nvml.nvmlDeviceGetPowerUsage(handle) / 1e3 * dt
                out[f"gpu/{i}"] = self._integrated[i]
        return out
