"""Ultralytics names without a public equivalent (ultralytics==8.4.190 in requirements.lock), each with why no public
API serves."""

from __future__ import annotations

from collections.abc import Callable

import torch


def decode_boxes(head, x: dict[str, torch.Tensor]) -> torch.Tensor:
    """What `head`'s class decodes boxes with: `Detect._get_decode_boxes`, the step that caches anchors on the head for
    the last input shape. No public method decodes alone, and the head calls it by this name from its forward."""
    return type(head)._get_decode_boxes(head, x)


def replace_decode_boxes(head, decode: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> None:
    """`head`'s forward decodes with `decode(x)` from now on (an instance attribute shadowing the class's method):
    ultralytics has no public hook around the anchor cache, and `Detect.dynamic` still shares it between threads."""
    head._get_decode_boxes = decode
