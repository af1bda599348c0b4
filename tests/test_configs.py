"""Every option of every config group composes and validates; the catalogue matches the libraries."""

import pytest
import tomllib
import yaml
from omegaconf import OmegaConf

from sustainable_ipa.config import CONFIG_DIR, PROJECT_ROOT, compose, group_options, validate
from sustainable_ipa.errors import UserError


def alias_of(group: str, option: str) -> str | None:
    """The option a file stands for when it holds nothing but a defaults list naming it (`video-default`)."""
    doc = yaml.safe_load((CONFIG_DIR / group / f"{option}.yaml").read_text()) or {}
    return doc["defaults"][0] if set(doc) == {"defaults"} else None


def with_its_pipeline(adaptation: str) -> list[str]:
    """`adaptation=<p>-default` is chosen with `pipeline=<p>` (the defaults list picks it from the pipeline); the other
    adaptations of a non-video pipeline name their pipeline themselves."""
    pipeline = adaptation.removesuffix("-default")
    return [f"adaptation={adaptation}"] + ([f"pipeline={pipeline}"] if pipeline in group_options("pipeline") else [])


@pytest.mark.parametrize("adaptation", group_options("adaptation"))
def test_every_adaptation_composes_and_fits_two_cores(adaptation):
    cfg = compose([*with_its_pipeline(adaptation), "hardware.cores=2"])
    validate(cfg)
    assert cfg.adaptation.name == (alias_of("adaptation", adaptation) or adaptation)


def test_each_pipeline_has_a_default_adaptation_and_embedded_inputs():
    for pipeline in group_options("pipeline"):
        cfg = compose([f"pipeline={pipeline}"])
        assert cfg.pipeline.name == pipeline
        assert set(cfg.adaptation) - {"name"} == set(cfg.pipeline.stages)
        assert list(cfg.search.space) == list(cfg.pipeline.stages)
        validate(cfg)


def video_adaptations() -> list[str]:
    return [n for n in group_options("adaptation") if n != "default" and not alias_of("adaptation", n)
            and compose(with_its_pipeline(n)).pipeline.name == "video"]


def test_adaptations_span_the_experiment():
    names = video_adaptations()
    assert len(names) >= 10
    cfgs = [compose([f"adaptation={n}"]).adaptation for n in names]
    pairs = {(a.detector.variant, a.classifier.variant) for a in cfgs}
    assert ("yolov5n", "resnet18") in pairs and ("yolov5x", "resnet152") in pairs
    batches = {a[s].batch_size for a in cfgs for s in ("detector", "classifier")}
    assert min(batches) == 1 and max(batches) == 32


def test_default_load_is_poisson_at_the_one_rate_search_and_adapt_use():
    for cfg in (compose(), compose(["+experiment=energy_study"])):
        assert cfg.trial.load == "poisson"
        assert cfg.search.load_rps == cfg.adapt.mean_rps == cfg.trial.rate_rps  # one setting, not equal numbers
    moved = compose(["trial.rate_rps=3.5"])
    assert moved.search.load_rps == moved.adapt.mean_rps == 3.5


def experiment_adaptations(name: str = "energy_study") -> list[str]:
    experiment = yaml.safe_load((CONFIG_DIR / "experiment" / f"{name}.yaml").read_text())
    return experiment["hydra"]["sweeper"]["params"]["adaptation"].split(",")


@pytest.mark.parametrize("adaptation", group_options("adaptation"))
def test_no_shipped_adaptation_has_a_batch_larger_than_the_requests_it_serves(adaptation):
    """Under the default trial and, for the experiments' adaptations, under the experiment's: each stage gets the
    items its embedded dataset's references hand it (weights=random)."""
    from itertools import cycle, islice

    from sustainable_ipa.data import load_dataset
    from sustainable_ipa.families import stage_families
    from sustainable_ipa.search.workload import pipeline_workload

    runs = [with_its_pipeline(adaptation)]
    for experiment in ("energy_study", "pipelines"):
        if adaptation in experiment_adaptations(experiment):
            runs.append([*with_its_pipeline(adaptation), f"+experiment={experiment}"])
    for overrides in runs:
        cfg = compose(overrides)
        workload = pipeline_workload(stage_families(cfg.pipeline), load_dataset(cfg.dataset))
        served = {stage: sum(islice(cycle(per_request), cfg.trial.requests))
                  for stage, per_request in workload.items_per_request().items()}
        for stage, items in served.items():
            assert cfg.adaptation[stage].batch_size <= items, (overrides, stage, items)


@pytest.mark.parametrize("group", ["hardware", "trial", "tracking", "pipeline"])
def test_every_option_composes(group):
    for option in group_options(group):
        cfg = compose([f"{group}={option}"])
        assert OmegaConf.to_container(cfg[group], resolve=True)


def test_dataset_options_compose():
    assert compose(["dataset=coco", "dataset.root=/d", "dataset.annotations=/a.json"]).dataset.n_images == 20
    assert compose(["dataset=video", "dataset.path=/v.mp4"]).dataset.max_frames > 0


def test_override_paths_users_rely_on():
    cfg = compose(["adaptation=yolov5s-resnet50", "adaptation.detector.batch_size=2", "adaptation.classifier.threads=1",
                   "trial.requests=7", "trial.sla_s=1.5", "trial.load=poisson", "weights=random",
                   "tracking.experiment=x", "dataset.annotations=/a.json"])
    assert (cfg.adaptation.detector.variant, cfg.adaptation.detector.batch_size) == ("yolov5s", 2)
    assert (cfg.trial.requests, cfg.trial.sla_s, cfg.trial.load, cfg.weights) == (7, 1.5, "poisson", "random")


def test_resnet_reference_accuracies_are_torchvision_v1_top1():
    from torchvision.models import get_model_weights

    for variant, spec in compose().pipeline.variants.classifier.items():
        meta = get_model_weights(variant)["IMAGENET1K_V1"].meta
        assert spec.reference_accuracy == pytest.approx(meta["_metrics"]["ImageNet-1K"]["acc@1"])


@pytest.mark.parametrize("override,problem", [
    ("adaptation.detector.variant=yolov9", "unknown detector variant"),
    ("adaptation.classifier.batch_size=0", "adaptation.classifier.batch_size=0 is not allowed"),
    ("adaptation.detector.threads=2", "needs 3 cores"),
    ("trial.load=burst", "trial.load='burst' is not allowed: input should be 'offline' or 'poisson'"),
])
def test_validation_names_the_problem(override, problem):
    with pytest.raises(UserError, match=problem):
        validate(compose(["hardware.cores=2", override]))


def test_conda_env_lists_the_same_dependencies_as_pyproject():
    deps = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((PROJECT_ROOT / "conda.yaml").read_text())["dependencies"]
    pip = next(d["pip"] for d in conda if isinstance(d, dict))
    assert sorted(pip) == sorted(deps)


def test_mlproject_declares_the_issue_parameters():
    project = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())
    params = project["entry_points"]["main"]["parameters"]
    assert set(params) == {"pipeline", "adaptation", "hardware", "trial", "dataset", "hydra_options"}
    assert "$(echo {hydra_options})" in project["entry_points"]["main"]["command"]
    for group in ("pipeline", "hardware", "trial"):
        assert params[group]["default"] in group_options(group)
    for group in ("adaptation", "dataset"):  # empty: the pipeline's own (<pipeline>-default, <pipeline>-sample)
        assert params[group]["default"] == ""
    assert CONFIG_DIR.is_dir()


def test_argv_normalization_lets_hydra_options_follow_mlproject_parameters():
    from sustainable_ipa.cli import normalize_argv

    argv = ["adaptation=default", "trial=default", "-m", "adaptation=a,b", "trial.requests=2"]
    assert normalize_argv(argv) == ["trial=default", "adaptation=a,b", "trial.requests=2", "-m"]


def test_argv_normalization_keeps_each_hydra_option_with_its_value():
    from sustainable_ipa.cli import normalize_argv

    argv = ["trial.requests=4", "--cfg", "job", "-p", "trial", "--info", "config", "-m", "trial.seed=1"]
    assert normalize_argv(argv) == ["trial.requests=4", "trial.seed=1", "--cfg", "job", "-p", "trial", "--info",
                                    "config", "-m"]
    # a bare `--info` (mlflow's hydra_options="trial.seed=1 --info") stays last, where no override follows it
    assert normalize_argv(["adaptation=default", "trial.seed=1", "-i"]) == ["adaptation=default", "trial.seed=1", "-i"]
    # what Hydra's own parser refuses goes to Hydra untouched, for its own message
    assert normalize_argv(["--info", "nonsense", "trial.seed=1"]) == ["--info", "nonsense", "trial.seed=1"]


def test_group_checks_read_sweeps_with_hydras_grammar(capsys):
    from sustainable_ipa.cli import check_group_choices

    # all valid: a glob, choice sweeps (one quoted), a range sweep of a plain key, a delete, a packaged group and an
    # appended one
    check_group_choices(["adaptation=glob(yolov5n*)", "adaptation=choice(default,yolov5n-resnet18)",
                         "adaptation=default,yolov5x-resnet152", 'adaptation="default",yolov5n-resnet18',
                         "trial.seed=range(0,3)", "~adaptation", "adaptation@other=default",
                         "+experiment=energy_study"])
    for bad, named in [("adaptation=choice(default,nope)", "unknown adaptation 'nope'"),
                       ("adaptation=default,nope", "unknown adaptation 'nope'"),
                       ("adaptation=glob(nothing*)", "glob(nothing*) matches no adaptation")]:
        with pytest.raises(SystemExit) as stopped:
            check_group_choices([bad])
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert named in err and "Fix: choose one of audio-qa-default" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        check_group_choices(["+experiment=nope"])  # an appended group is checked too
    assert "unknown experiment 'nope'. Fix: choose one of energy_study" in capsys.readouterr().err


def test_group_checks_leave_configs_from_other_folders_to_hydra(tmp_path):
    from sustainable_ipa.cli import check_group_choices

    (tmp_path / "adaptation").mkdir()
    (tmp_path / "adaptation" / "mine.yaml").write_text("name: mine\n")
    check_group_choices(["-cd", str(tmp_path), "adaptation=mine"])  # an option of that folder: no early refusal
    check_group_choices([f"hydra.searchpath=[file://{tmp_path}]", "adaptation=mine"])
    with pytest.raises(SystemExit):
        check_group_choices(["adaptation=mine"])


def test_the_core_budget_is_the_cores_this_process_may_use(monkeypatch):
    import os

    from sustainable_ipa.config import available_cores

    cfg = compose()
    assert cfg.hardware.cores is None  # the default: whatever the process is given
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # e.g. `taskset -c 0` or a 1-CPU container
    assert available_cores(cfg.hardware) == 1
    with pytest.raises(UserError, match="needs 3 cores"):
        validate(compose(["adaptation=default", "adaptation.classifier.threads=2"]))
    validate(compose(["adaptation=default"]))  # one thread per stage, the least it runs on: its stages share the core


def test_a_run_needs_its_cores_here_even_where_hardware_cores_says_more(monkeypatch):
    import os

    from sustainable_ipa.config import check_run_fits

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # a 2-core process
    cfg = compose(["hardware.cores=8", "adaptation.detector.threads=2"])
    validate(cfg)  # 3 of 8 cores: the budget holds (a search may compose for that machine)
    with pytest.raises(UserError, match=r"needs 3 cores but this process may run on 2 \(hardware.cores=8"):
        check_run_fits(cfg)
    check_run_fits(compose(["hardware.cores=8"]))  # the default needs 2: it runs
