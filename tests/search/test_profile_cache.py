"""The profile cache is the machine's: keyed by its fingerprint, never read on another CPU or with other cores, and
rows no measurement gives are ignored with a warning. Fake profiles only: no model is built."""

from __future__ import annotations

import shutil

import pytest
from rich.console import Console

from fake_profiles import use_fake_probes
from sustainable_ipa.fingerprint import Fingerprint
from sustainable_ipa.search import profiling_job
from sustainable_ipa.search.evaluators import ProfileEvaluator
from sustainable_ipa.search.profiler import cache_path, missing_profiles, read_cache
from sustainable_ipa.search.profiles import ProfileTable, StageProfile
from sustainable_ipa.search.space import SearchSpace

HERE = Fingerprint("AMD EPYC 7B13 64-Core Processor", ("avx2", "avx512f"), 2)
MORE_CORES = Fingerprint(HERE.cpu_model, HERE.flags, 16)
OTHER_CPU = Fingerprint("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", ("avx2", "avx512f", "amx_bf16"), 2)
TINY = ["search.space.detector.precision=[fp32]", "search.space.classifier.precision=[fp32]",
        "search.space.detector.runtime=[torch]", "search.space.classifier.runtime=[torch]",
        "search.space.detector.variants=[yolov5n]", "search.space.classifier.variants=[resnet18]",
        "search.space.detector.batch_size=[1]", "search.space.classifier.batch_size=[1]",
        "search.space.detector.threads=[1]", "search.space.classifier.threads=[1]"]
ROWS = [StageProfile("detector", "yolov5n", 1, 1, (0.10,) * 20, 1.0, "estimate"),
        StageProfile("classifier", "resnet18", 1, 1, (0.05,) * 20, 0.2, "estimate")]
SAMPLE_ITEMS = {"detector": (1,), "classifier": (5, 4)}  # the sample dataset: bus.jpg, zidane.jpg


def test_each_machine_has_its_own_cache_file(tmp_path):
    paths = {cache_path(tmp_path, "cpu", m) for m in (HERE, MORE_CORES, OTHER_CPU)}
    assert len(paths) == 3 and all(p.name.startswith("cpu-") for p in paths)
    assert cache_path(tmp_path, "cpu", HERE) == cache_path(tmp_path, "cpu", Fingerprint(*vars(HERE).values()))


def test_a_cache_measured_on_one_machine_is_not_read_on_another(make_cfg, client, tmp_path, monkeypatch):
    cfg = make_cfg(*TINY, f"profiling.cache_dir={tmp_path}/profiles")
    ProfileTable(ROWS, "cpu", SAMPLE_ITEMS, HERE.key).save(cache_path(cfg.profiling.cache_dir, "cpu", HERE))
    measured = []

    def fake_profile_space(space, workload, build, repeats, energy_window, source, hardware, cached, *args, **kw):
        measured.append(cached)  # what the cache gave the profiler; the profiles themselves are made up
        return ProfileTable(ROWS, hardware, workload.items_per_request(), kw["fingerprint"])

    monkeypatch.setattr(profiling_job, "profile_space", fake_profile_space)
    use_fake_probes(monkeypatch)
    monkeypatch.setattr(profiling_job, "this_machine", lambda: HERE)
    console = Console(record=True, width=300)
    assert profiling_job.profile_job(cfg, console).fingerprint == HERE.key and measured == []  # all from the cache
    assert f"from the cache {cache_path(cfg.profiling.cache_dir, 'cpu', HERE)} (measured on {HERE.key})" in \
        console.export_text()
    for elsewhere in (MORE_CORES, OTHER_CPU):
        monkeypatch.setattr(profiling_job, "this_machine", lambda: elsewhere)
        table = profiling_job.profile_job(cfg, Console(record=True))
        assert measured.pop() is None and table.fingerprint == elsewhere.key  # measured again, as this machine's
        assert ProfileTable.load(cache_path(cfg.profiling.cache_dir, "cpu", elsewhere)).fingerprint == elsewhere.key
    assert ProfileTable.load(cache_path(cfg.profiling.cache_dir, "cpu", HERE)).fingerprint == HERE.key  # untouched
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.tags["fingerprint"] for r in runs) == sorted([MORE_CORES.key, OTHER_CPU.key])


@pytest.mark.parametrize("recorded", [OTHER_CPU.key, ""])  # another machine's, or one that never said
def test_a_cache_file_copied_from_elsewhere_is_not_read_and_says_why(tmp_path, recorded):
    written = tmp_path / "written.csv"
    ProfileTable(ROWS, "cpu", SAMPLE_ITEMS, recorded).save(written)
    path = cache_path(tmp_path, "cpu", HERE)
    shutil.copy(written, path)
    warnings = []
    assert read_cache(path, HERE, warnings.append) is None
    assert warnings == [f"the profile cache {path} was measured on {recorded or 'an unrecorded machine'}, not on this "
                        f"one ({HERE.key}): profiling again"]


def test_implausible_cached_rows_are_ignored_with_a_warning_and_measured_again(tmp_path):
    insane = [StageProfile("detector", "yolov5n", 2, 1, (0.2,) * 19 + (float("nan"),), 1.0, "estimate"),
              StageProfile("detector", "yolov5n", 4, 1, (0.4,) * 20, -0.5, "estimate"),
              StageProfile("classifier", "resnet18", 2, 1, (-0.1,) * 20, 0.2, "estimate"),
              StageProfile("classifier", "resnet18", 4, 1, (0.2,) * 20, float("inf"), "estimate")]
    path = cache_path(tmp_path, "cpu", HERE)
    ProfileTable(ROWS + insane, "cpu", SAMPLE_ITEMS, HERE.key).save(path)
    warnings = []
    table = read_cache(path, HERE, warnings.append)
    assert list(table.rows.values()) == ROWS
    [line] = warnings
    assert line.startswith(f"4 rows of the profile cache {path} have a latency or energy no measurement gives")
    assert "detector yolov5n b2 t1 fp32/torch, detector yolov5n b4 t1 fp32/torch, classifier resnet18 b2 t1 fp32/torch" in line
    space = SearchSpace.from_config(*_space(), max_cores=None)
    assert sorted(missing_profiles(space, table)) == sorted(p.key for p in insane)


def _space():
    from omegaconf import OmegaConf

    from sustainable_ipa.config import compose

    grid = {"variants": None, "batch_size": [1, 2, 4], "threads": [1], "replicas": [1]}
    return (OmegaConf.create({"detector": {**grid, "variants": ["yolov5n"]},
                              "classifier": {**grid, "variants": ["resnet18"]}}), compose().pipeline)


def test_the_study_says_which_machine_its_profiles_are_of():
    from sustainable_ipa.config import compose
    from sustainable_ipa.search.space import PipelineChoice, StageChoice

    evaluator = ProfileEvaluator(ProfileTable(ROWS, "cpu", SAMPLE_ITEMS, HERE.key), compose())
    choice = PipelineChoice(detector=StageChoice("yolov5n", 1, 1, 1), classifier=StageChoice("resnet18", 1, 1, 1))
    assert evaluator.study_tags() == {"profiles_fingerprint": HERE.key}
    assert evaluator.labels(choice, "trial-run")["profiles_fingerprint"] == HERE.key
