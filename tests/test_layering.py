"""Imports point one way: the layers below the jobs import nothing from the jobs, and metrics nothing of the pipeline
it measures (a trial reaches it as `metrics.record.TrialTimeline`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sustainable_ipa"
JOBS = {"search", "report", "adapt", "experiment", "cli"}
BELOW = {"pipeline": JOBS, "energy": JOBS, "models": JOBS, "tracking": JOBS, "data": JOBS,
         "metrics": JOBS | {"pipeline"}}


def imported_packages(path: Path) -> set[str]:
    """The project's top-level packages and modules `path` imports, at module top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        found |= {n.split(".")[1] for n in names if n.startswith("sustainable_ipa.")}
    return found


@pytest.mark.parametrize("layer", sorted(BELOW))
def test_a_lower_layer_imports_nothing_above_it(layer):
    upward = {f"{path.relative_to(SRC)} imports {package}" for path in (SRC / layer).rglob("*.py")
              for package in imported_packages(path) & BELOW[layer]}
    assert not upward
