"""The idle baseline: the machine's power with nothing running, measured before a run and cached for a while."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from sustainable_ipa.energy.meter import Meter


def measure_idle_power_w(meter: Meter, idle_s: float, sleep=time.sleep) -> float:
    meter.begin_window("idle")
    sleep(idle_s)
    return meter.end_window("idle").power_w


def idle_power_w(meter: Meter, idle_s: float, cache_path: str | Path | None, cache_s: float, key: str,
                 now=time.time, sleep=time.sleep, warn=None) -> tuple[float, bool]:
    """(idle power in W, whether it came from the cache). `key` names what the baseline depends on (the machine's
    fingerprint and the meter: `EnergySession.idle_key`); `idle_s <= 0` means no baseline (0 W: nothing is
    subtracted); `cache_s <= 0` neither reads nor writes the cache. A cached value that no meter could give
    (negative, not finite) is ignored, and `warn` is told."""
    if idle_s <= 0:
        return 0.0, False
    cache = Path(cache_path) if cache_path and cache_s > 0 else None
    entries = {}
    if cache is not None and cache.is_file():
        try:
            entries = json.loads(cache.read_text())
        except (OSError, json.JSONDecodeError):
            entries = {}  # a broken cache is remeasured, not fatal
        hit = entries.get(key)
        if hit and now() - hit["measured_at"] <= cache_s:
            value = float(hit["idle_power_w"])
            if math.isfinite(value) and value >= 0:
                return value, True
            if warn:
                warn(f"the cached idle baseline {value} W in {cache} is no power a meter gives; measuring again")
    power = measure_idle_power_w(meter, idle_s, sleep)
    if cache is not None:
        entries[key] = {"idle_power_w": power, "measured_at": now(), "idle_s": idle_s}
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        tmp.replace(cache)
    return power, False
