"""Where each stage's weights come from: pretrained files or folders (weights=<folder>, weights_dir, the libraries'
caches, a download when online) or random init. What a variant loads is its family's business
(`ModelFamily.weights_sources`); the plan is the same for every family."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from sustainable_ipa.errors import UserError
from sustainable_ipa.families.base import WeightsSource

PRETRAINED = "pretrained"
RANDOM = "random"


@dataclass(frozen=True)
class WeightsPlan:
    """What the run loads. `kind` is logged as the tag `weights_kind`."""

    kind: str  # PRETRAINED or RANDOM
    files: dict[str, Path | None] = field(default_factory=dict)  # per stage: a file or folder; None = random init
    reason: str = ""  # why random weights were chosen, for the warning and the run record


def downloadable(url: str, timeout_s: float = 2.0) -> bool:
    host = url.split("/")[2]
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def download_file(url: str, destination: Path) -> bool:
    """One published file fetched to `destination`; False when it cannot be (offline, refused)."""
    import torch

    if not downloadable(url):
        return False
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(destination), progress=True)
    except Exception:  # any transport failure means "not downloadable"; the caller decides what follows
        destination.unlink(missing_ok=True)
        return False
    return True


def library_paths(source: WeightsSource) -> tuple[Path, ...]:
    """Where the libraries themselves keep the source (their caches)."""
    return source.library_cache


def _find(source: WeightsSource, folders: list[Path]) -> Path | None:
    found = (_find_in(source.name, folder) for folder in folders)
    return next((p for p in found if p), None) or next((p for p in library_paths(source) if _find_in(p.name, p.parent)),
                                                       None)


def _find_in(name: str, folder: Path) -> Path | None:
    path = folder / name
    return path if path.is_file() or (path.is_dir() and any(path.iterdir())) else None


def _fetched(source: WeightsSource, weights_dir: Path) -> Path | None:
    destination = weights_dir / source.name
    if source.fetch is None or not source.url or not downloadable(source.url):
        return None
    return destination if source.fetch(destination) else None


def plan_weights(setting: str, weights_dir: str | Path, wanted: dict[str, WeightsSource]) -> WeightsPlan:
    """Resolve `weights=auto|pretrained|random|<folder>` for each stage's source (`wanted`, by stage)."""
    setting = str(setting)
    if setting == RANDOM:
        return WeightsPlan(RANDOM, {stage: None for stage in wanted}, "weights=random")
    if setting not in ("auto", PRETRAINED):
        folder = Path(setting)
        if not folder.is_dir():
            raise UserError(f"weights folder {folder} does not exist",
                            "pass weights=auto|pretrained|random or an existing folder")
        found = {stage: _find_in(s.name, folder) for stage, s in wanted.items()}
        missing = [s.name for stage, s in wanted.items() if found[stage] is None]
        if missing:
            raise UserError(f"{', '.join(missing)} not found in weights folder {folder}",
                            "put the files there under these names or pass weights=random")
        return WeightsPlan(PRETRAINED, found)

    found = {stage: _find(s, [Path(weights_dir)]) or _fetched(s, Path(weights_dir)) for stage, s in wanted.items()}
    missing = [s for stage, s in wanted.items() if found[stage] is None]
    if not missing:
        return WeightsPlan(PRETRAINED, found)
    names = ", ".join(s.name for s in missing)
    if setting == PRETRAINED:
        urls = " and ".join(s.url or s.name for s in missing)
        raise UserError(f"pretrained weights {names} not found in {weights_dir} or the library caches, and not "
                        "downloadable from here", f"download {urls} into {weights_dir}, or pass weights=random "
                        "for compute/energy profiling")
    # weights=auto offline: the run still works, on random weights; the caller warns and tags it.
    return WeightsPlan(RANDOM, {stage: None for stage in wanted},
                       f"pretrained {names} not found in {weights_dir} or the library caches and not downloadable")
