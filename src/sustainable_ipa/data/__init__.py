"""Datasets: frames to feed the pipeline and, where known, their COCO ground truth."""

from sustainable_ipa.data.frames import Dataset, Frame, GroundTruthBox, load_dataset

__all__ = ["Dataset", "Frame", "GroundTruthBox", "load_dataset"]
