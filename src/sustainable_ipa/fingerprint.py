"""Where a measurement was taken: the CPU model, the flags that change its speed, the cores and memory this process
may use, the GPU, and the versions of the libraries that run the models. Anything measured (an idle baseline, a
profile) is keyed by it and every run and trial records it, never a config name alone: the development VM under one
hardware name is an AMD EPYC one day and an Intel Xeon with AMX the next."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

# The flags that move inference speed or decide what a CPU can run natively (vector width, bf16, int8).
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8")
RUNTIMES = ("torch", "openvino")  # the libraries whose version changes how fast (and how) a model runs
GIB = 1024 ** 3


@dataclass(frozen=True)
class Fingerprint:
    cpu_model: str
    flags: tuple[str, ...]  # of SPEED_FLAGS, those the CPU has
    cores: int  # cores this process may use: its affinity, capped by a cgroup CPU quota; not the machine's count
    memory_gib: int | None = None  # memory this process may use: the machine's, capped by a cgroup limit
    gpu: str = "none"  # the NVIDIA GPUs NVML names, "none" without a GPU or driver
    versions: tuple[tuple[str, str], ...] = ()  # (library, version) of RUNTIMES

    @property
    def key(self) -> str:
        """The whole fingerprint in one line: what caches are keyed by and what the `machine` tag says."""
        parts = [f"{self.cpu_model} [{' '.join(self.flags)}] {self.cores} cores"]
        if self.memory_gib is not None:
            parts.append(f"{self.memory_gib} GiB")
        if self.gpu != "none" or self.versions:
            parts.append(f"GPU {self.gpu}")
        parts += [f"{name} {version}" for name, version in self.versions]
        return ", ".join(parts)

    @property
    def machine_id(self) -> str:
        return machine_id(self.key)

    def tags(self) -> dict[str, str]:
        """What every run and trial records about where it ran."""
        return {"machine": self.key, "machine_id": self.machine_id, "machine_cpu": self.cpu_model,
                "machine_flags": " ".join(self.flags) or "none", "machine_cores": str(self.cores),
                "machine_memory_gib": str(self.memory_gib if self.memory_gib is not None else "unknown"),
                "machine_gpu": self.gpu, **{f"machine_{name}": version for name, version in self.versions}}


def machine_id(key: str) -> str:
    """A short name of a fingerprint's key, for tables, labels and file names."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def read_fingerprint(cpuinfo: str, cores: int, memory_gib: int | None = None, gpu: str = "none",
                     versions: tuple[tuple[str, str], ...] = ()) -> Fingerprint:
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())  # the first processor's
    present = set(fields.get("flags", "").split())
    return Fingerprint(fields.get("model name", "unknown CPU"), tuple(f for f in SPEED_FLAGS if f in present), cores,
                       memory_gib, gpu, versions)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_folders(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: str | None = None) -> dict[str, Path]:
    """This process's cgroup folder per controller ("cpu", "memory"; "" for cgroup v2's unified tree), from the
    `N:controllers:/path` lines of /proc/self/cgroup."""
    text = proc_cgroup if proc_cgroup is not None else (_read(Path("/proc/self/cgroup")) or "")
    folders: dict[str, Path] = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "-", "")
        for controller in controllers.split(",") if controllers else [""]:
            base = root if not controller else root / controller
            folder = base / path.strip().lstrip("/")
            folders[controller] = folder if folder.is_dir() else base
    return folders


def cgroup_cpu_limit(folders: dict[str, Path]) -> float | None:
    """The CPUs a cgroup quota allows (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`), None where there is none."""
    v2 = _read(folders[""] / "cpu.max") if "" in folders else None
    if v2:
        quota, _, period = v2.partition(" ")
        return None if quota == "max" else int(quota) / int(period or 100_000)
    v1 = folders.get("cpu")
    quota, period = (_read(v1 / "cpu.cfs_quota_us"), _read(v1 / "cpu.cfs_period_us")) if v1 else (None, None)
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None


def cgroup_memory_limit(folders: dict[str, Path]) -> int | None:
    """Bytes a cgroup allows (v2 `memory.max`, v1 `memory.limit_in_bytes`), None where unlimited."""
    candidates = [folders[""] / "memory.max"] if "" in folders else []
    candidates += [folders["memory"] / "memory.limit_in_bytes"] if "memory" in folders else []
    for path in candidates:
        value = _read(path)
        if value and value != "max" and int(value) < 2 ** 62:  # v1 writes "no limit" as a huge number
            return int(value)
    return None


def usable_cores(affinity: int, cgroup_cpus: float | None) -> int:
    return max(1, min(affinity, math.ceil(cgroup_cpus))) if cgroup_cpus else affinity


def usable_memory_gib(meminfo: str, cgroup_bytes: int | None) -> int | None:
    total = None
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
    limits = [b for b in (total, cgroup_bytes) if b]
    return round(min(limits) / GIB) if limits else None


def gpu_names() -> str:
    """The NVIDIA GPUs NVML sees, "none" where there is no driver or device."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver, no library: no GPU to fingerprint
        return "none"
    try:
        names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                 for i in range(pynvml.nvmlDeviceGetCount())]
        return ", ".join(n.decode() if isinstance(n, bytes) else n for n in names) or "none"
    finally:
        pynvml.nvmlShutdown()


def runtime_versions() -> tuple[tuple[str, str], ...]:
    found = []
    for name in RUNTIMES:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(found)


@lru_cache(maxsize=1)
def this_machine() -> Fingerprint:
    cpuinfo = _read(Path("/proc/cpuinfo"))
    if cpuinfo is None:  # not Linux: the model alone, as the platform names it
        import platform

        cpuinfo = f"model name: {platform.processor() or 'unknown CPU'}"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    folders = cgroup_folders()
    return read_fingerprint(cpuinfo, usable_cores(affinity, cgroup_cpu_limit(folders)),
                            usable_memory_gib(_read(Path("/proc/meminfo")) or "", cgroup_memory_limit(folders)),
                            gpu_names(), runtime_versions())
