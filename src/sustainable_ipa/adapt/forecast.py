"""Load predictors: the load the adapter plans the next decision interval for, from the loads it has observed.

The API, shared by the trace replay (`simulate`) and the live loop:

    predictor = make_predictor("ets", window=48)       # or Last(), Headroom(window, quantile), Learned("ets", …)
    rate_rps = predictor.predict(observed_rps)         # observed_rps: one load per past interval, oldest first

`observed_rps` holds the statistic the SLA is planned for (each interval's mean or peak, `adapt.plan_for`; see
`traces.aggregate`). A predictor keeps no state between calls: the same history gives the same prediction, so a
replay and a live loop that observed the same loads decide the same. An empty history raises (nothing to predict
from); a negative prediction is clipped to 0.

- `last`: the last interval's load (a persistence forecast, the adapter's only predictor before issue 20).
- `headroom`: a high quantile of the last `window` intervals, never below the last one: bursts seen recently are
  planned for again, and a rise is followed at once (a quantile alone lags a step up by a few intervals).
- `ets` / `arima`: statsforecast's AutoETS / AutoARIMA fitted to the last `window` intervals at every call, one
  step ahead; `level` (e.g. 90) plans for the upper bound of its prediction interval instead of the point forecast.
  Fitting takes milliseconds (AutoETS) to tens of milliseconds (AutoARIMA) per call: it is timed apart from the
  decision (`forecast_ms` per interval, bench/bench_forecast.py).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

PREDICTORS = ("last", "headroom", "ets", "arima")
MIN_FIT_POINTS = 8  # a learned model is fitted from this many intervals on (AutoETS refuses fewer than 7); below,
# and where a fit fails, it predicts like `last`


class Predictor(Protocol):
    name: str

    def predict(self, observed_rps: Sequence[float]) -> float:
        """The load (requests/s) to plan the next interval for, from the past intervals' loads, oldest first."""
        ...


def _checked(observed_rps: Sequence[float]) -> np.ndarray:
    history = np.asarray(observed_rps, dtype=float)
    if history.size == 0:
        raise ValueError("a predictor needs at least one observed interval")
    return history


@dataclass(frozen=True)
class Last:
    name: str = "last"

    def predict(self, observed_rps: Sequence[float]) -> float:
        return float(_checked(observed_rps)[-1])


@dataclass(frozen=True)
class Headroom:
    """The `quantile` of the last `window` intervals' loads, or the last one where it is higher."""

    window: int = 12
    quantile: float = 0.95
    name: str = "headroom"

    def predict(self, observed_rps: Sequence[float]) -> float:
        history = _checked(observed_rps)
        return float(max(np.quantile(history[-self.window:], self.quantile), history[-1]))


@dataclass(frozen=True)
class Learned:
    """statsforecast's AutoETS (`model="ets"`) or AutoARIMA (`"arima"`), non-seasonal, refitted on the last `window`
    intervals at each call; the point forecast, or the upper bound of the `level` % prediction interval."""

    model: str = "ets"
    window: int = 48
    level: int | None = None
    name: str = "ets"

    def predict(self, observed_rps: Sequence[float]) -> float:
        history = _checked(observed_rps)[-self.window:]
        if history.size < MIN_FIT_POINTS or np.ptp(history) == 0:  # too short to fit, or a constant: persistence
            return float(history[-1])
        from statsforecast.models import AutoARIMA, AutoETS

        model = AutoETS(season_length=1) if self.model == "ets" else AutoARIMA(season_length=1)
        with warnings.catch_warnings():  # short, flat-ish windows make the fit warn about its own numerics
            warnings.simplefilter("ignore")
            try:
                out = model.forecast(y=history, h=1, level=[self.level] if self.level else None)
            except (NotImplementedError, ValueError, np.linalg.LinAlgError):  # a window it cannot fit
                return float(history[-1])
        value = float(np.asarray(out[f"hi-{self.level}"] if self.level else out["mean"])[0])
        return max(value, 0.0) if math.isfinite(value) else float(history[-1])


def make_predictor(name: str, window: int = 48, quantile: float = 0.95, level: int | None = None) -> Predictor:
    """The predictor `adapt.predictor` names, with `adapt.forecast`'s window, quantile and level."""
    if name == "last":
        return Last()
    if name == "headroom":
        return Headroom(window, quantile)
    if name in ("ets", "arima"):
        return Learned(name, window, level, name if level is None else f"{name}-hi{level}")
    raise ValueError(f"unknown predictor {name!r}: one of {', '.join(PREDICTORS)}")
