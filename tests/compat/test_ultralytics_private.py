"""The private ultralytics name behind sustainable_ipa.compat.ultralytics_private, checked against the pinned
version: an upgrade that renames the Detect head's decoding or stops calling it from the forward fails here."""

import inspect

import torch
import ultralytics
from ultralytics.nn.modules.head import Detect

from sustainable_ipa.compat.ultralytics_private import decode_boxes, replace_decode_boxes

WHERE = f"ultralytics {ultralytics.__version__}: Detect._get_decode_boxes, used by " \
        "sustainable_ipa/compat/ultralytics_private.py"


def tiny_head() -> Detect:
    head = Detect(nc=2, ch=(8, 16))
    head.stride = torch.tensor([8.0, 16.0])
    return head.eval()


def test_the_detect_heads_decoding_takes_the_head_and_its_features():
    assert hasattr(Detect, "_get_decode_boxes"), f"{WHERE}, is gone"
    assert list(inspect.signature(Detect._get_decode_boxes).parameters) == ["self", "x"], \
        f"{WHERE}, takes other parameters"


def test_the_heads_forward_decodes_with_the_replacement_and_gives_what_its_own_decoding_gives():
    head = tiny_head()
    features = [torch.rand(1, 8, 8, 8), torch.rand(1, 16, 4, 4)]
    with torch.no_grad():
        own = head(features)[0]
        calls = []
        replace_decode_boxes(head, lambda x: calls.append(1) or decode_boxes(head, x))
        replaced = head(features)[0]
    assert calls == [1], f"{WHERE}, is no longer what the head's forward calls"
    torch.testing.assert_close(replaced, own)
