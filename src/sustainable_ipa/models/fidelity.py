"""What every family's fidelity shares: how far a stage in another precision or runtime strays from torch fp32 with
the same weights on the same inputs. Computed with random weights too (it needs no ground truth); a measurement of
agreement, not of accuracy. Each family's own measures are in its module (`families/`)."""

from __future__ import annotations

import copy

import torch


def fp32_twin(model):
    """The same model, weights shared, run by torch in fp32 (autocast keeps fp32 weights; an OpenVINO stage keeps
    its torch model beside the IR)."""
    twin = copy.copy(model)
    twin.precision = "fp32"
    if hasattr(twin, "runtime"):
        twin.runtime = "torch"
    return twin


def cosines(low: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per item: the cosine between the flattened outputs."""
    return torch.nn.functional.cosine_similarity(low.flatten(1).double(), reference.flatten(1).double(), dim=1)


def centred(x: torch.Tensor) -> torch.Tensor:
    """Per item, the flattened output less its mean: a cosine of these is a correlation."""
    flat = x.flatten(1).double()
    return flat - flat.mean(dim=1, keepdim=True)
