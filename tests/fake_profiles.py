"""A search space of one configuration and made-up profiles for it: a study of the profile evaluator without
profiling, for tests whose subject is where the study's runs go, not its figures."""

from __future__ import annotations

from sustainable_ipa.search import profiling_job
from sustainable_ipa.search.profiles import ProfileTable, StageProfile
from sustainable_ipa.search.profiling_plan import Probe

ROWS = [StageProfile("detector", "yolov5n", 1, 1, (0.10,) * 20, 1.0, "estimate"),
        StageProfile("classifier", "resnet18", 1, 1, (0.05,) * 20, 0.2, "estimate")]
ONE_CONFIGURATION = [f"search.space.{stage}.{knob}=[{value}]" for stage, variant in
                     (("detector", "yolov5n"), ("classifier", "resnet18"))
                     for knob, value in (("variants", variant), ("batch_size", 1), ("threads", 1), ("replicas", 1),
                                         ("precision", "fp32"), ("runtime", "torch"))] + \
    ["search.sampler=random", "trial.sla_s=30", "search.load_rps=0.5"]


def use_fake_profiles(monkeypatch) -> None:
    """Profiling makes up `ROWS` instead of measuring (no model is built); the cache is written as usual."""

    def fake_profile_space(space, workload, build, repeats, energy_window, source, hardware, cached, *args, **kw):
        return ProfileTable(ROWS, hardware, workload.items_per_request(), kw["fingerprint"])

    monkeypatch.setattr(profiling_job, "profile_space", fake_profile_space)
    use_fake_probes(monkeypatch)


def use_fake_probes(monkeypatch) -> None:
    """The plan's probe makes up each variant's figures instead of building it: 10 ms an item, 100 MB."""
    monkeypatch.setattr(profiling_job, "probe_variants",
                        lambda variants, *args, **kw: {v: Probe(0.01, 0.1, 100 * 2**20) for v in variants})
