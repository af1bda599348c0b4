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


def _read_cache(cache: Path, warn) -> dict:
    """The cache's entries; a cache that is not a JSON object of entries is rebuilt, not fatal (and said)."""
    try:
        entries = json.loads(cache.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        entries = None
    if isinstance(entries, dict):
        return entries
    if warn:
        warn(f"the idle-baseline cache {cache} is not one this project wrote; it is rebuilt")
    return {}


def idle_power_w(meter: Meter, idle_s: float, cache_path: str | Path | None, cache_s: float, key: str,
                 now=time.time, sleep=time.sleep, warn=None) -> tuple[float, bool]:
    """(idle power in W, whether it came from the cache). `key` names what the baseline depends on (the machine's
    fingerprint and the meter: `EnergySession.idle_key`); `idle_s <= 0` means no baseline (0 W: nothing is
    subtracted); `cache_s <= 0` neither reads nor writes the cache. A cached value that no meter could give
    (negative, not finite) is ignored, and `warn` is told."""
    if idle_s <= 0:
        return 0.0, False
    cache = Path(cache_path) if cache_path and cache_s > 0 else None
    entries = _read_cache(cache, warn) if cache is not None and cache.is_file() else {}
    hit = entries.get(key)
    if hit is not None:
        try:
            value, fresh = float(hit["idle_power_w"]), now() - float(hit["measured_at"]) <= cache_s
        except (TypeError, KeyError, ValueError):
            value, fresh = math.nan, True  # an entry of another shape: said below, then measured again
        if fresh and math.isfinite(value) and value >= 0:
            return value, True
        if fresh and warn:
            shown = f"{value} W" if not math.isnan(value) else repr(hit)
            warn(f"the cached idle baseline {shown} in {cache} is no power a meter gives; measuring again")
    power = measure_idle_power_w(meter, idle_s, sleep)
    if cache is not None:
        entries[key] = {"idle_power_w": power, "measured_at": now(), "idle_s": idle_s}
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        tmp.replace(cache)
    return power, False
