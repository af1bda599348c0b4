"""Environment ultralytics must see before it is imported: no network checks, no pip installs at run time."""

import os
import tempfile
from pathlib import Path


def configure_ultralytics() -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    if "YOLO_CONFIG_DIR" not in os.environ:
        config_dir = Path.home() / ".config" / "Ultralytics"
        try:
            config_dir.mkdir(parents=True, exist_ok=True)
        except OSError:  # read-only home (CI sandboxes): keep settings in a temp folder
            config_dir = Path(tempfile.gettempdir()) / "sustainable-ipa-ultralytics"
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
