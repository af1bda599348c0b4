"""Searching the adaptation space: stage profiles, evaluators, and the Optuna multi-objective study."""
