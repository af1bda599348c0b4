"""Where each stage's weights come from: pretrained files (folder, library caches, download) or random init."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from sustainable_ipa.errors import UserError

PRETRAINED = "pretrained"
RANDOM = "random"
YOLO_RELEASE = "v8.4.0"  # the ultralytics assets release that hosts the YOLOv5u checkpoints


@dataclass(frozen=True)
class WeightsPlan:
    """What the run loads. `kind` is logged as the tag `weights_kind`."""

    kind: str  # PRETRAINED or RANDOM
    detector_file: Path | None
    classifier_file: Path | None
    reason: str = ""  # why random weights were chosen, for the warning and the run record


def detector_file_name(variant: str) -> str:
    return f"{variant}u.pt"  # the ultralytics re-release of YOLOv5 with an anchor-free head


def detector_url(variant: str) -> str:
    return f"https://github.com/ultralytics/assets/releases/download/{YOLO_RELEASE}/{detector_file_name(variant)}"


def classifier_url(variant: str) -> str:
    from torchvision.models import get_model_weights

    return get_model_weights(variant)["IMAGENET1K_V1"].url


def classifier_file_name(variant: str) -> str:
    return classifier_url(variant).rsplit("/", 1)[-1]


def search_dirs(weights_dir: Path) -> list[Path]:
    """Folders searched for pretrained files: the configured one, then the libraries' own caches."""
    import torch
    from ultralytics.utils import SETTINGS

    return [weights_dir, Path(SETTINGS["weights_dir"]), Path(torch.hub.get_dir()) / "checkpoints"]


def downloadable(url: str, timeout_s: float = 2.0) -> bool:
    host = url.split("/")[2]
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _find(name: str, folders: list[Path]) -> Path | None:
    return next((folder / name for folder in folders if (folder / name).is_file()), None)


def _download(url: str, destination: Path) -> Path | None:
    import torch

    if not downloadable(url):
        return None
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(destination), progress=True)
    except Exception:  # any transport failure means "not downloadable"; the caller decides what follows
        destination.unlink(missing_ok=True)
        return None
    return destination


def plan_weights(setting: str, weights_dir: str | Path, detector: str, classifier: str) -> WeightsPlan:
    """Resolve `weights=auto|pretrained|random|<folder>` for this pair of variants."""
    setting = str(setting)
    if setting == RANDOM:
        return WeightsPlan(RANDOM, None, None, "weights=random")
    wanted = {
        "detector": (detector_file_name(detector), detector_url(detector)),
        "classifier": (classifier_file_name(classifier), classifier_url(classifier)),
    }
    if setting not in ("auto", PRETRAINED):
        folder = Path(setting)
        if not folder.is_dir():
            raise UserError(f"weights folder {folder} does not exist", "pass weights=auto|pretrained|random or an existing folder")
        found = {stage: _find(name, [folder]) for stage, (name, _) in wanted.items()}
        missing = [name for stage, (name, _) in wanted.items() if found[stage] is None]
        if missing:
            raise UserError(f"{', '.join(missing)} not found in weights folder {folder}",
                            "put the files there under these names or pass weights=random")
        return WeightsPlan(PRETRAINED, found["detector"], found["classifier"])

    folders = search_dirs(Path(weights_dir))
    found = {}
    for stage, (name, url) in wanted.items():
        found[stage] = _find(name, folders) or _download(url, Path(weights_dir) / name)
    missing = [(name, url) for stage, (name, url) in wanted.items() if found[stage] is None]
    if not missing:
        return WeightsPlan(PRETRAINED, found["detector"], found["classifier"])
    names = ", ".join(name for name, _ in missing)
    if setting == PRETRAINED:
        urls = " and ".join(url for _, url in missing)
        raise UserError(f"pretrained weights {names} not found in {weights_dir} or the library caches, and not downloadable "
                        f"from here", f"download {urls} into {weights_dir}, or pass weights=random for compute/energy profiling")
    # weights=auto offline: the run still works, on random weights; the caller warns and tags it.
    return WeightsPlan(RANDOM, None, None, f"pretrained {names} not found in {weights_dir} or the library caches "
                       "and not downloadable")
