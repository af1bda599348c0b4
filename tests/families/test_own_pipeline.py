"""A pipeline of your own: one YAML and its adaptation in a folder passed with `hydra.searchpath`, made of the
project's families, with no change to src/ — and run for real, three stages through the stage worker processes."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml
from tiny_encoders import TINY as ENCODERS
from tiny_seq2seq import TINY as SEQ2SEQ

from helpers import run_main, runs_by_status
from sustainable_ipa.config import PROJECT_ROOT, compose, validate
from sustainable_ipa.errors import UserError

STAGES = {"language": ("language-identification", ENCODERS["language-identification"]),
          "translation": ("translation", SEQ2SEQ["translation"]),
          "summary": ("summarization", SEQ2SEQ["summarization"])}


def pipeline_yaml(edit=None) -> str:
    """conf/pipeline/tiny-nlp.yaml as a user writes it: nlp's three stages, each family's tiny variant."""
    pipeline = {"name": "tiny-nlp", "stages": list(STAGES), "sla_s": 30.0, "variants": {}}
    for stage, (family, tiny) in STAGES.items():
        pipeline[stage] = {"family": family, "params": dict(tiny["params"])}
        pipeline["variants"][stage] = {tiny["variant"]: {"reference_accuracy": 50.0, "source": "a test's made-up figure",
                                                         "model": copy.deepcopy(tiny["model"])}}
    space = {stage: {"variants": [tiny["variant"]], "batch_size": [1, 2], "threads": [1], "replicas": [1],
                     "precision": ["fp32"], "runtime": ["torch"]} for stage, (_, tiny) in STAGES.items()}
    doc = {"pipeline": pipeline, "search": {"space": space}}
    if edit:
        edit(doc["pipeline"])
    return "# @package _global_\n" + yaml.safe_dump(doc, sort_keys=False)


def own_configs(folder, edit=None) -> str:
    """The user's folder: the pipeline, its default adaptation, its default dataset (the project's nlp inputs)."""
    (folder / "pipeline").mkdir(parents=True)
    (folder / "adaptation").mkdir()
    (folder / "dataset").mkdir()
    (folder / "pipeline" / "tiny-nlp.yaml").write_text(pipeline_yaml(edit))
    stages = {stage: {"variant": tiny["variant"], "batch_size": 2, "threads": 1, "replicas": 1, "precision": "fp32",
                      "runtime": "torch"} for stage, (_, tiny) in STAGES.items()}
    (folder / "adaptation" / "tiny-nlp-default.yaml").write_text(yaml.safe_dump({"name": "tiny-nlp", **stages}))
    (folder / "dataset" / "tiny-nlp-sample.yaml").write_text("defaults:\n  - nlp-sample\n")
    return f"hydra.searchpath=[file://{folder}]"


@pytest.mark.slow
def test_a_pipeline_from_a_searchpath_folder_runs_three_stages_in_worker_processes(tmp_path):
    searchpath = own_configs(tmp_path / "mine")
    out = run_main([searchpath, "pipeline=tiny-nlp", "weights=random", "trial.requests=4", "trial.warmup=0",
                    "trial.repetitions=1", "trial.rate_rps=20", "energy.idle_s=0.3", "energy.poll_interval_s=0.2"],
                   tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    [run] = runs_by_status(client, "FINISHED")
    m, tags = run.data.metrics, run.data.tags
    assert tags["pipeline"] == "tiny-nlp" and tags["pipeline_input"] == "text"
    for stage in STAGES:  # every stage ran in its own worker process, measured there
        assert m[f"cpu_{stage}_s"] > 0 and m[f"{stage}_latency_p50_s"] > 0 and m[f"{stage}_batch_s"] > 0
    assert m["translation_items_per_request"] == 1 and m["summary_items_per_request"] == 1
    assert m["energy_j_per_request"] > 0 and m["requests_served"] == 4
    assert "cores_shared" in tags or len(__import__("os").sched_getaffinity(0)) >= 3
    # nothing of it lives in the project: src/ and conf/ are as the checkout has them
    changed = subprocess.run(["git", "status", "--porcelain", "--", "src", "conf"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True).stdout
    assert "tiny-nlp" not in changed


def compose_own(tmp_path, edit=None, *overrides):
    return compose([own_configs(tmp_path / "mine", edit), "pipeline=tiny-nlp", *overrides])


def test_the_searchpath_pipeline_composes_with_its_own_defaults(tmp_path):
    cfg = compose_own(tmp_path)
    validate(cfg)
    assert list(cfg.pipeline.stages) == list(STAGES) and cfg.adaptation.name == "tiny-nlp"
    assert cfg.dataset.name == "nlp-sample" and cfg.trial.sla_s == 30.0 and cfg.search.study_name.startswith("tiny-nlp")


@pytest.mark.parametrize("edit,problem", [
    (lambda p: p["translation"].update(family="nope"), "unknown model family 'nope'"),
    (lambda p: p["translation"].update(family="no.such.module:Family"), "model family 'no.such.module:Family' cannot be imported"),
    (lambda p: p.update(stages=["language", "summary", "translation"]) or p["summary"].update(family="extractive-qa"),
     "stage 'translation' (Translation) takes text items but stage 'summary' (ExtractiveQA) hands nothing on"),
    (lambda p: p["summary"].update(family="speech2text"), "stage 'summary' (Speech2Text) takes speech items"),
    (lambda p: next(iter(p["variants"]["summary"].values())).pop("source"), "pipeline.variants.summary.distilbart-tiny.source is not set"),
    (lambda p: p["summary"]["params"].update(max_new_tokens=0), "pipeline.summary.params.max_new_tokens=0 is not allowed"),
    (lambda p: next(iter(p["variants"]["summary"].values()))["model"]["config"].update(d_modle=8),
     "model.config has d_modle, which BartConfig does not know"),
])
def test_a_broken_pipeline_yaml_is_one_line(tmp_path, edit, problem):
    with pytest.raises(UserError) as err:
        validate(compose_own(tmp_path, edit))
    assert problem in str(err.value) and "Fix:" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_a_broken_pipeline_yaml_at_the_entry_point_is_exit_2_and_no_run(tmp_path):
    searchpath = own_configs(tmp_path / "mine", lambda p: p["translation"].update(family="nope"))
    out = run_main([searchpath, "pipeline=tiny-nlp", "weights=random"], tmp_path)
    assert out.returncode == 2 and out.stderr.strip().startswith("error: unknown model family 'nope'"), out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "mlruns" / "mlflow.db").exists()


@pytest.mark.slow
def test_profiling_the_study_the_adapter_and_the_report_work_on_a_pipeline_of_its_own(make_cfg, client, tmp_path):
    """The jobs take everything from the pipeline's YAML: its stages are profiled (through its families' models),
    searched, adapted over a trace (simulated and live) and reported on."""
    from sustainable_ipa.adapt.adapt_job import adapt_job
    from sustainable_ipa.adapt.live import live_job
    from sustainable_ipa.experiment import run_job
    from sustainable_ipa.report.report_job import report_job
    from sustainable_ipa.search.profiling_job import profile_job
    from sustainable_ipa.search.search_job import search_job

    cfg = make_cfg(own_configs(tmp_path / "mine"), "pipeline=tiny-nlp", "profiling.repeats=2",
                   f"profiling.cache_dir={tmp_path}/profiles", f"search.storage=sqlite:///{tmp_path}/optuna.db",
                   "search.n_trials=4", "search.sampler=random", "adapt.duration_s=2700", "adapt.step_s=900",
                   "adapt.mean_rps=0.5", "adapt.speedup=600", "adapt.live_policies=[energy]",
                   f"report.out_dir={tmp_path}/reports")
    table = profile_job(cfg)
    assert {(p.stage, p.batch_size) for p in table.rows.values()} == {(s, b) for s in STAGES for b in (1, 2)}
    assert search_job(cfg).study.trials  # composed from those profiles
    comparison = adapt_job(cfg)
    assert list(comparison.index) == ["ipa", "energy", "carbon"]
    live_job(cfg)  # three stages on this machine's cores, shared where it has fewer
    run_job(cfg)
    folder = report_job(cfg)
    assert (folder / "report.html").is_file()
    assert not runs_by_status(client, "RUNNING")
    adapt_runs = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
                  if r.data.tags.get("adaptation") in ("adapt", "adapt-live")]
    assert {r.info.status for r in adapt_runs} == {"FINISHED"} and len(adapt_runs) == 2  # simulated, live
    trials = (folder / "trials.csv").read_text()
    assert "tiny-nlp" in trials and "adapt-live" not in trials  # the report is about the pipeline's runs
