"""Samplers by name, all seedable."""

from __future__ import annotations

import optuna

from sustainable_ipa.errors import UserError


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    factories = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "bruteforce": lambda: optuna.samplers.BruteForceSampler(seed=seed),
    }
    if name not in factories:
        raise UserError(f"unknown search.sampler '{name}'", f"choose one of {', '.join(factories)}")
    return factories[name]()
