"""Where a measurement was taken: the CPU model, the flags that change its speed, and the cores this process may
use. Anything measured (an idle baseline, say) is keyed by it, never by a config name: the development VM under one
hardware name is an AMD EPYC one day and an Intel Xeon with AMX the next."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

# The flags that move inference speed or decide what a CPU can run natively (vector width, bf16, int8).
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class Fingerprint:
    cpu_model: str
    flags: tuple[str, ...]  # of SPEED_FLAGS, those the CPU has
    cores: int  # cores this process may run on (its affinity), not the machine's count

    @property
    def key(self) -> str:
        return f"{self.cpu_model} [{' '.join(self.flags)}] {self.cores} cores"


def read_fingerprint(cpuinfo: str, cores: int) -> Fingerprint:
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())  # the first processor's
    present = set(fields.get("flags", "").split())
    return Fingerprint(fields.get("model name", "unknown CPU"), tuple(f for f in SPEED_FLAGS if f in present), cores)


@lru_cache(maxsize=1)
def this_machine() -> Fingerprint:
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
    except OSError:  # not Linux: the model alone, as the platform names it
        import platform

        cpuinfo = f"model name: {platform.processor() or 'unknown CPU'}"
    return read_fingerprint(cpuinfo, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                            else (os.cpu_count() or 1))
