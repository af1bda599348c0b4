"""Precision and runtime in the search: the space's pairs, the study's suggestions and records, the runs a trial
starts, and the accuracy the catalogue gives each precision (fake profiles and a fake evaluator only: no model runs)."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
from omegaconf import OmegaConf

from sustainable_ipa.config import compose
from sustainable_ipa.errors import UserError
from sustainable_ipa.fingerprint import SPEED_FLAGS, Fingerprint
from sustainable_ipa.metrics.accuracy import accuracy_basis, option_accuracies, pipeline_accuracy
from sustainable_ipa.search.configurations import is_new_configuration
from sustainable_ipa.search.profiles import ProfileTable, StageProfile
from sustainable_ipa.search.space import NUMERICS, PipelineChoice, SearchSpace, StageChoice

ALL_FLAGS = Fingerprint("a CPU with every flag", SPEED_FLAGS, 2)
NO_BF16 = Fingerprint("a CPU without bf16", tuple(f for f in SPEED_FLAGS if "bf16" not in f), 2)


def space(detector=None, classifier=None):
    stage = {"variants": ["yolov5n"], "batch_size": [1], "threads": [1], "replicas": [1],
             "precision": ["fp32", "bf16", "int8"], "runtime": ["torch", "openvino"]}
    return OmegaConf.create({"detector": {**stage, **(detector or {})},
                             "classifier": {**stage, "variants": ["resnet18"], **(classifier or {})}})


@pytest.fixture
def openvino_for_the_classifier_only(monkeypatch):
    monkeypatch.setattr("sustainable_ipa.families.yolov5.YoloV5.runtimes", ("torch",))


def test_the_space_enumerates_precision_and_runtime_without_the_pairs_a_run_refuses(openvino_for_the_classifier_only):
    s = SearchSpace.from_config(space(), compose().pipeline, max_cores=None, machine=ALL_FLAGS)
    assert s.stages["detector"][NUMERICS] == (("fp32", "torch"), ("bf16", "torch"))
    assert s.stages["classifier"][NUMERICS] == (("fp32", "torch"), ("fp32", "openvino"), ("bf16", "torch"),
                                                ("bf16", "openvino"), ("int8", "openvino"))
    assert {(stage, p, r) for stage, p, r, _ in s.skipped} == {
        ("detector", "fp32", "openvino"), ("detector", "bf16", "openvino"), ("detector", "int8", "openvino"),
        ("detector", "int8", "torch"), ("classifier", "int8", "torch")}
    choices = s.all_choices()
    assert len(choices) == 2 * 5
    assert {c["classifier"].numerics for c in choices} == set(s.stages["classifier"][NUMERICS])
    assert not any(c["detector"].runtime == "openvino" or (c[st].precision == "int8" and c[st].runtime == "torch")
                   for c in choices for st in ("detector", "classifier"))
    # profiled per pair, never per refused one
    assert set(s.profile_grid()["classifier"][NUMERICS]) == set(s.stages["classifier"][NUMERICS])


def test_a_precision_the_cpu_lacks_is_left_out_unless_emulation_is_allowed(openvino_for_the_classifier_only):
    pipeline = compose().pipeline
    lacking = SearchSpace.from_config(space(), pipeline, None, machine=NO_BF16)
    assert all(p != "bf16" for o in lacking.stages.values() for p, _ in o[NUMERICS])
    assert any(p == "bf16" and "avx512_bf16 or amx_bf16" in why for _, p, _, why in lacking.skipped)
    emulated = SearchSpace.from_config(space(), pipeline, None, machine=NO_BF16, allow_emulated=True)
    assert ("bf16", "torch") in emulated.stages["detector"][NUMERICS]


def test_a_stage_left_with_no_pair_a_run_builds_is_one_line(openvino_for_the_classifier_only):
    with pytest.raises(UserError, match=r"search.space.detector: no precision × runtime of it can run "
                                        r"\(int8/torch: int8 runs on openvino only.*Fix: list fp32"):
        SearchSpace.from_config(space(detector={"precision": ["int8"]}), compose().pipeline, None)


def test_a_searched_precision_without_a_published_change_is_refused_before_profiling():
    pipeline = OmegaConf.create(OmegaConf.to_container(compose().pipeline))
    del pipeline.variants.classifier.resnet18.precision_change["int8"]
    with pytest.raises(UserError, match="pipeline.variants.classifier.resnet18 has no published accuracy change "
                                        "for int8"):
        SearchSpace.from_config(space(), pipeline, None)


def test_a_space_without_the_knobs_searches_fp32_on_torch():
    plain = OmegaConf.create({s: {"variants": [v], "batch_size": [1], "threads": [1], "replicas": [1]}
                              for s, v in (("detector", "yolov5n"), ("classifier", "resnet18"))})
    s = SearchSpace.from_config(plain, compose().pipeline, None)
    assert all(o[NUMERICS] == (("fp32", "torch"),) for o in s.stages.values())


def test_a_choice_records_and_overrides_its_precision_and_runtime():
    choice = PipelineChoice(detector=StageChoice("yolov5n", 1, 1, 1),
                            classifier=StageChoice("resnet18", 4, 1, 1, "int8", "openvino"))
    assert choice.params()["classifier.precision"] == "int8" and choice.params()["classifier.runtime"] == "openvino"
    assert choice.params()["detector.precision"] == "fp32"
    assert "adaptation.classifier.runtime=openvino" in choice.overrides()


# the study ------------------------------------------------------------------------------------------------------
class FakeEvaluator:
    """Figures that favour int8 on energy and fp32 on accuracy, so both are on the front."""

    name = "profile"
    deterministic = True

    def evaluate(self, choice, parent_run_id=None):
        low = choice["classifier"].precision == "int8"
        return {"accuracy_reference": 0.30 if low else 0.31, "energy_j_per_request": 1.0 if low else 3.0,
                "cost_cores": float(choice.cores), "latency_p99_s": 0.1, "throughput_rps": 10.0}

    def labels(self, choice, trial_run_id):
        return {"evaluator": self.name, "energy_source": "estimate", "figures": "composed"}

    def study_tags(self):
        return {}


def test_the_study_suggests_precision_and_runtime_and_each_trial_run_records_them(make_cfg, client, tmp_path,
                                                                                 monkeypatch):
    from sustainable_ipa.search.study import run_study
    from sustainable_ipa.tracking.store import open_store

    monkeypatch.setattr("sustainable_ipa.fingerprint.this_machine", lambda: ALL_FLAGS)
    monkeypatch.setattr("sustainable_ipa.families.yolov5.YoloV5.runtimes", ("torch",))
    cfg = make_cfg(f"search.storage=sqlite:///{tmp_path}/optuna.db", "search.n_trials=12", "search.sampler=random",
                   "search.objectives=[accuracy,energy_per_request]",
                   "search.space.detector.variants=[yolov5n]", "search.space.classifier.variants=[resnet18]",
                   "search.space.detector.batch_size=[1]", "search.space.classifier.batch_size=[1]",
                   "search.space.detector.threads=[1]", "search.space.classifier.threads=[1]",
                   "search.space.detector.replicas=[1]", "search.space.classifier.replicas=[1]",
                   "search.space.detector.precision=[fp32]", "search.space.detector.runtime=[torch]",
                   "search.space.classifier.precision=[fp32,int8]", "search.space.classifier.runtime=[openvino]")
    experiment_id = open_store(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    outcome = run_study(cfg, FakeEvaluator(), client, experiment_id)
    trials = [t for t in outcome.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
              if is_new_configuration(t)]  # a space of 2: each evaluated once, however often drawn
    assert sorted(t.params["classifier.numerics"] for t in trials) == ["fp32/openvino", "int8/openvino"]
    assert outcome.study.user_attrs[NUMERICS] == {"detector": ["fp32/torch"],
                                                  "classifier": ["fp32/openvino", "int8/openvino"]}
    for t in trials:
        params = client.get_run(t.user_attrs["mlflow_run_id"]).data.params
        assert (params["classifier.precision"], params["classifier.runtime"]) == \
            tuple(t.params["classifier.numerics"].split("/"))
        assert (params["detector.precision"], params["detector.runtime"]) == ("fp32", "torch")
    pareto = client.download_artifacts(outcome.parent_run_id, "pareto.csv", str(tmp_path))
    header = open(pareto).readline()
    assert "classifier.precision" in header and "classifier.runtime" in header
    # a study made with other pairs is refused, not mixed
    other = make_cfg(*[o for o in cfg_overrides(cfg)], "search.space.classifier.precision=[int8]")
    with pytest.raises(UserError, match="searches other precisions and runtimes"):
        run_study(other, FakeEvaluator(), client, experiment_id)


def cfg_overrides(cfg) -> list[str]:
    """The overrides that rebuild the study's own storage and space (all but the classifier's precision)."""
    space = cfg.search.space
    out = [f"search.storage={cfg.search.storage}", "search.n_trials=12", "search.sampler=random",
           "search.objectives=[accuracy,energy_per_request]"]
    for stage in ("detector", "classifier"):
        for key in ("variants", "batch_size", "threads", "replicas", "runtime") + (("precision",) if stage == "detector"
                                                                                  else ()):
            out.append(f"search.space.{stage}.{key}=[{','.join(map(str, space[stage][key]))}]")
    return out


def test_the_run_evaluator_runs_the_trial_in_its_precision_and_runtime(make_cfg, monkeypatch):
    from sustainable_ipa import experiment
    from sustainable_ipa.search.evaluators import RunEvaluator

    seen = []
    monkeypatch.setattr(experiment, "run_job", lambda cfg, **kw: seen.append(cfg) or SimpleNamespace(metrics={}))
    choice = PipelineChoice(detector=StageChoice("yolov5n", 1, 1, 1, "bf16", "torch"),
                            classifier=StageChoice("resnet18", 4, 1, 1, "int8", "openvino"))
    RunEvaluator(make_cfg()).evaluate(choice)
    adaptation = seen[0].adaptation
    assert (adaptation.detector.precision, adaptation.detector.runtime) == ("bf16", "torch")
    assert (adaptation.classifier.precision, adaptation.classifier.runtime) == ("int8", "openvino")


# accuracy per option --------------------------------------------------------------------------------------------
def test_the_shipped_catalogue_gives_every_variant_a_labelled_change_per_precision():
    variants = compose().pipeline.variants
    for stage, options in variants.items():
        for variant, spec in options.items():
            assert set(spec.precision_change) == {"bf16", "int8"}, (stage, variant)
            for change in spec.precision_change.values():
                assert change.basis in ("published", "nearest_published") and change.source
    # the figures published for these models (OpenVINO 2022.1's table, largest loss of its range)
    resnet = variants.classifier
    assert (resnet.resnet18.precision_change.int8.points, resnet.resnet18.precision_change.int8.basis) == \
        (-0.29, "published")
    assert (resnet.resnet50.precision_change.int8.points, resnet.resnet50.precision_change.int8.basis) == \
        (-0.24, "published")
    # none published for these: the nearest model's, marked so
    assert {resnet[v].precision_change.int8.basis for v in ("resnet34", "resnet101", "resnet152")} == \
        {"nearest_published"}
    assert {spec.precision_change.int8.basis for spec in variants.detector.values()} == {"nearest_published"}


def test_an_options_accuracy_is_the_reference_plus_the_published_change_and_says_so():
    variants = compose().pipeline.variants
    accuracy = option_accuracies(variants)
    assert accuracy["classifier"]["resnet18"] == pytest.approx({"fp32": 69.758, "bf16": 69.758 + 0.06,
                                                                "int8": 69.758 - 0.29})
    assert accuracy_basis(variants, "classifier", "resnet18", "fp32") == "reference"
    assert accuracy_basis(variants, "classifier", "resnet18", "int8") == "published"
    assert accuracy_basis(variants, "classifier", "resnet34", "int8") == "nearest_published"


def test_the_profile_evaluator_composes_the_published_accuracy_and_labels_its_basis():
    from sustainable_ipa.search.evaluators import ProfileEvaluator

    rows = [StageProfile("detector", "yolov5n", 1, 1, (0.1,) * 20, 1.0, "estimate"),
            StageProfile("classifier", "resnet34", 4, 1, (0.05,) * 20, 0.5, "estimate", precision="int8",
                         runtime="openvino")]
    evaluator = ProfileEvaluator(ProfileTable(rows, "cpu", {"detector": (1,), "classifier": (4,)}), compose())
    choice = PipelineChoice(detector=StageChoice("yolov5n", 1, 1, 1),
                            classifier=StageChoice("resnet34", 4, 1, 1, "int8", "openvino"))
    metrics = evaluator.evaluate(choice)
    assert metrics["accuracy_reference"] == pytest.approx(pipeline_accuracy([45.7, 73.314 - 0.29]))
    assert evaluator.labels(choice, "run")["accuracy_basis"] == "detector=reference,classifier=nearest_published"


def test_a_runs_reference_accuracy_is_the_published_figure_of_its_precision(make_cfg, client):
    """A trial of the run evaluator reads the run's accuracy_reference: the same figure the study composes."""
    from sustainable_ipa.experiment import run_job

    outcome = run_job(make_cfg("trial.requests=2", "adaptation.classifier.precision=bf16",
                               "hardware.allow_emulated=true"))
    accuracy = client.get_run(outcome.run_id).data.metrics["accuracy_reference"]
    assert accuracy == pytest.approx(pipeline_accuracy([45.7, 69.758 + 0.06]))
