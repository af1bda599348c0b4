"""Objectives the study can optimise: a name, the run-record metric it reads, and its direction."""

from __future__ import annotations

from dataclasses import dataclass

from sustainable_ipa.errors import UserError


@dataclass(frozen=True)
class Objective:
    name: str
    metric: str
    direction: str  # "maximize" | "minimize"


OBJECTIVES = {o.name: o for o in [
    Objective("accuracy", "accuracy_reference", "maximize"),
    Objective("energy_per_request", "energy_j_per_request", "minimize"),
    Objective("cost", "cost_cores", "minimize"),
    Objective("cost_usd", "cost_usd_per_1k", "minimize"),
    Objective("latency_p99", "latency_p99_s", "minimize"),
    Objective("emissions", "emissions_g_per_1k", "minimize"),
    Objective("throughput", "throughput_rps", "maximize"),
]}


def resolve_objectives(names) -> list[Objective]:
    names = list(names)
    if not names:
        raise UserError("search.objectives is empty", f"list some of {', '.join(OBJECTIVES)}")
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise UserError(f"unknown objective {', '.join(unknown)}", f"choose from {', '.join(OBJECTIVES)}")
    if len(set(names)) != len(names):
        raise UserError("search.objectives repeats an objective", "list each objective once")
    return [OBJECTIVES[n] for n in names]
