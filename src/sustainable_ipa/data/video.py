"""Frames of a video file, read with OpenCV; no ground truth."""

from __future__ import annotations

from pathlib import Path

from sustainable_ipa.data.frames import Dataset, Frame
from sustainable_ipa.errors import UserError


def video_dataset(name: str, path: str, max_frames: int, stride: int = 1) -> Dataset:
    import cv2

    if path in (None, "???") or not Path(path).is_file():
        raise UserError(f"video file {path} does not exist", "pass dataset.path=/path/to/video.mp4")
    capture = cv2.VideoCapture(str(path))
    frames: list[Frame] = []
    index = 0
    try:
        while len(frames) < max_frames:
            ok, image = capture.read()
            if not ok:
                break
            if index % stride == 0:
                frames.append(Frame(index + 1, f"frame{index:06d}", image))
            index += 1
    finally:
        capture.release()
    if not frames:
        raise UserError(f"no frame could be decoded from {path}", "check the file plays and OpenCV supports its codec")
    return Dataset(name, frames)
