"""The profiling job's energy: the configured meter alone in each batch's window."""

from __future__ import annotations

from fakes import PowercapTree
from sustainable_ipa.energy import codecarbon_meter
from sustainable_ipa.search.profiling_job import profile_job

ONE_PROFILE_PER_STAGE = [f"search.space.{stage}.{key}={value}" for stage, variant in
                         (("detector", "yolov5n"), ("classifier", "resnet18"))
                         for key, value in (("variants", f"[{variant}]"), ("batch_size", "[1]"), ("threads", "[1]"),
                                            ("precision", "[fp32]"), ("runtime", "[torch]"))]


def test_profiling_with_rapl_starts_no_cross_check_meter_per_batch(make_cfg, tmp_path, monkeypatch):
    """CodeCarbon side by side (energy.compare) would start its tracker inside every batch's window."""
    PowercapTree(tmp_path / "powercap")

    def refuse(*args, **kwargs):
        raise AssertionError("profiling started a CodeCarbon cross-check")

    monkeypatch.setattr(codecarbon_meter.CodeCarbonMeter, "__init__", refuse)
    cfg = make_cfg(*ONE_PROFILE_PER_STAGE, "energy.meter=rapl", f"energy.rapl_root={tmp_path}/powercap",
                   "energy.compare=codecarbon", "profiling.repeats=1",
                   f"profiling.cache_dir={tmp_path}/profiles")
    table = profile_job(cfg)
    assert {r.energy_source for r in table.rows.values()} == {"rapl"}
    assert len(table.rows) == 2
    # a counter's figures are measurements: no power-model interval
    assert all(r.energy_j_per_item_low is None for r in table.rows.values())
