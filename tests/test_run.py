"""A full run on the embedded sample with random weights, read back from MLflow."""

import csv
import io
import json

import pytest

from sustainable_ipa.experiment import run_job
from helpers import runs_by_status

LATENCY = ["latency_mean_s", "latency_p50_s", "latency_p95_s", "latency_p99_s"]
CONTRACT = ["accuracy_reference", *LATENCY, "detector_batch_s", "classifier_batch_s", "throughput_rps",
            "sla_attainment", "cost_cores", "cost_usd_per_1k", "cpu_detector_s", "cpu_classifier_s",
            "detector_latency_p50_s", "classifier_latency_p99_s", "classifier_items_per_request"]


def test_one_run_records_the_contract(make_cfg, client):
    outcome = run_job(make_cfg("trial.requests=5", "adaptation.detector.batch_size=2"))
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    assert set(CONTRACT) <= set(m)
    assert m["accuracy_reference"] == pytest.approx(0.457 * 0.69758)
    assert m["cost_cores"] == 2
    assert 0 < m["latency_p50_s"] <= m["latency_p95_s"] <= m["latency_p99_s"]
    assert m["sla_attainment"] == 1.0  # 5 light requests finish far within 6.89 s
    # random weights: measured accuracy is absent and the tag says why
    assert not {"detector_map50", "classifier_top1", "accuracy_measured"} & set(m)
    tags = run.data.tags
    assert tags["weights_kind"] == "random" and tags["adaptation"] == "default" and tags["git_commit"]
    assert tags["pipeline"] == "video" and tags["pipeline_input"] == "frame" and tags["handoff"] == "reference"
    params = run.data.params
    assert params["detector.reference_accuracy"] == "45.7" and "YOLOv5" in params["detector.accuracy_source"]
    assert not [k for k in params if k.startswith("pipeline.variants.")]  # the catalogue is in config.yaml
    assert run.data.params["adaptation.detector.batch_size"] == "2"
    assert run.data.params["trial.requests"] == "5"
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"config.yaml", "requests.csv", "outputs.json"} <= artifacts
    rows = list(csv.DictReader(io.StringIO(open(client.download_artifacts(outcome.run_id, "requests.csv")).read())))
    assert len(rows) == 5
    assert [int(r["classifier_items"]) for r in rows] == [5, 4, 5, 4, 5]  # ground-truth crops of bus.jpg / zidane.jpg
    assert m["classifier_items_per_request"] == pytest.approx(23 / 5)
    assert all(float(r["arrival_s"]) <= float(r["detector_done_s"]) <= float(r["finish_s"]) for r in rows)
    outputs = json.load(open(client.download_artifacts(outcome.run_id, "outputs.json")))
    assert [o["item"] for o in outputs] == ["bus.jpg", "zidane.jpg"]  # once per input, though requests cycle
    assert [o["outputs"]["detector"] for o in outputs] == [[[]], [[]]]  # random weights detect nothing
    assert [len(o["outputs"]["classifier"]) for o in outputs] == [5, 4]
    # each replica as measured inside its worker process, not read back from the config
    replicas = json.load(open(client.download_artifacts(outcome.run_id, "replicas.json")))
    assert sorted((r["stage"], r["torch_threads"], len(r["cores"])) for r in replicas) == \
        [("classifier", 1, 1), ("detector", 1, 1)]
    assert all(r["cpu_s"] > 0 for r in replicas) and len({r["pid"] for r in replicas}) == 2


def test_repetitions_make_a_parent_with_children_and_confidence_intervals(make_cfg, client):
    outcome = run_job(make_cfg("trial.repetitions=3", "trial.requests=2"))
    assert len(outcome.repetition_run_ids) == 3
    parent = client.get_run(outcome.run_id)
    for child_id in outcome.repetition_run_ids:
        child = client.get_run(child_id)
        assert child.data.tags["mlflow.parentRunId"] == outcome.run_id and child.info.status == "FINISHED"
        assert "latency_p99_s" in child.data.metrics
    children = [client.get_run(c).data.metrics["latency_p99_s"] for c in outcome.repetition_run_ids]
    pm = parent.data.metrics
    assert pm["latency_p99_s_mean"] == pytest.approx(sum(children) / 3)
    assert 0 <= pm["latency_p99_s_ci95_low"] <= pm["latency_p99_s_mean"] <= pm["latency_p99_s_ci95_high"]
    assert 0 <= pm["sla_attainment_ci95_low"] <= pm["sla_attainment_ci95_high"] <= 1
    assert not runs_by_status(client, "RUNNING")


def test_poisson_load_runs(make_cfg, client):
    outcome = run_job(make_cfg("trial.load=poisson", "trial.rate_rps=50", "trial.requests=3"))
    assert client.get_run(outcome.run_id).data.metrics["throughput_rps"] > 0


@pytest.mark.parametrize("knobs", [[], ["adaptation.classifier.precision=int8", "adaptation.classifier.runtime=openvino"]])
def test_weights_from_a_folder_record_measured_accuracy(make_cfg, client, tmp_path, knobs):
    """The pretrained path end to end; the files hold random weights, so mAP is 0 but every metric is there. With
    the classifier in int8 on OpenVINO, its measured top-1 is that model's (the precision's accuracy, measured)."""
    from test_weights import _write_weights

    _write_weights(tmp_path / "w")
    outcome = run_job(make_cfg(f"weights={tmp_path / 'w'}", "trial.requests=2", "adaptation.classifier.batch_size=2",
                               f"export_dir={tmp_path}/exports", *knobs))
    run = client.get_run(outcome.run_id)
    m = run.data.metrics
    assert run.data.tags["weights_kind"] == "pretrained"
    assert m["detector_map50"] == 0.0 and m["detector_map50_95"] == 0.0  # random weights detect nothing
    assert 0.0 <= m["classifier_top1"] <= 1.0 and m["accuracy_measured"] == 0.0
    if knobs:
        assert run.data.tags["export_classifier"] == "built" and m["fidelity_classifier_logit_cosine_mean"] > 0.99
