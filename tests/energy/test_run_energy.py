"""Energy in the run record: metrics, source tag, power artifacts, CV over repetitions, the lock."""

from __future__ import annotations

import threading

import pytest

from fakes import PowercapTree
from helpers import runs_by_status
from sustainable_ipa.energy.lock import MachineLock
from sustainable_ipa.errors import UserError
from sustainable_ipa.experiment import run_job

ENERGY = ["energy_j_total", "power_w_mean", "energy_j_active", "energy_j_per_request", "energy_detector_j",
          "energy_classifier_j", "energy_cpu_j", "idle_power_w", "emissions_g_total", "emissions_g_per_1k",
          "carbon_intensity_g_per_kwh", "energy_delay_j_s"]


def test_estimated_energy_is_recorded_and_labelled(make_cfg, client):
    outcome = run_job(make_cfg("trial.repetitions=2", "trial.requests=3"))
    parent = client.get_run(outcome.run_id)
    assert parent.data.tags["energy_source"] == "estimate"
    assert "no readable RAPL" in parent.data.tags["energy_fallback"]  # never silent
    child = client.get_run(outcome.repetition_run_ids[0])
    m = child.data.metrics
    assert set(ENERGY) <= set(m)
    # the reference model's interval on every energy figure, the central figure inside it
    for name in ("energy_j_total", "energy_j_per_request", "emissions_g_per_1k", "idle_power_w"):
        assert 0 <= m[f"{name}_low"] <= m[name] <= m[f"{name}_high"], name
    assert m["energy_j_total_high"] > m["energy_j_total_low"]
    tags = parent.data.tags
    assert tags["power_model"] == "boavizta" and "boaviztapi" in tags["power_model_source"]
    assert tags["idle_baseline"] == "modelled"
    assert m["energy_j_active"] == pytest.approx(m["energy_j_total"] - m["idle_power_w"] * m["energy_j_total"] / m["power_w_mean"])
    assert m["energy_j_per_request"] == pytest.approx(m["energy_j_active"] / 3)
    assert m["energy_j_static"] + m["energy_j_active"] == pytest.approx(m["energy_j_total"])  # both shares recorded
    assert m["energy_detector_j"] + m["energy_classifier_j"] == pytest.approx(m["energy_j_active"])
    cpu_s = m["cpu_detector_s"] + m["cpu_classifier_s"]  # the split is by the CPU time measured in each stage's workers
    assert m["energy_detector_j"] == pytest.approx(m["energy_j_active"] * m["cpu_detector_s"] / cpu_s)
    assert {"power.csv", "power.png"} <= {a.path for a in client.list_artifacts(child.info.run_id)}
    pm = parent.data.metrics
    # two repetitions: a spread, but too few for an interval (metrics/stats.py)
    assert "energy_j_per_request_cv" in pm and "energy_j_per_request_ci95_low" not in pm


def test_rapl_run_with_codecarbon_side_by_side(make_cfg, client, tmp_path):
    tree = PowercapTree(tmp_path / "powercap")
    stop = threading.Event()

    def burn():  # the fake packages draw 20 W each while the run goes on
        while not stop.wait(0.05):
            tree.add_uj("intel-rapl:0", 1_000_000)
            tree.add_uj("intel-rapl:1", 1_000_000)

    worker = threading.Thread(target=burn, daemon=True)
    worker.start()
    try:
        outcome = run_job(make_cfg("energy.meter=rapl", f"energy.rapl_root={tmp_path}/powercap", "trial.requests=3",
                                   "energy.compare=codecarbon"))
    finally:
        stop.set()
    run = client.get_run(outcome.run_id)
    assert run.data.tags["energy_source"] == "rapl" and "energy_fallback" not in run.data.tags
    m = run.data.metrics
    assert m["power_w_mean"] == pytest.approx(40.0, rel=0.3)
    assert "energy_j_total_low" not in m  # a measurement has no model interval
    # CodeCarbon over the same window, beside RAPL's figure
    assert m["energy_j_total_codecarbon"] > 0
    assert m["codecarbon_to_ours_ratio"] == pytest.approx(m["energy_j_total_codecarbon"] / m["energy_j_total"])


def test_a_second_energy_measured_run_refuses_and_leaves_no_run(make_cfg, client, tmp_path):
    cfg = make_cfg()
    with MachineLock(cfg.energy.lock_path):
        with pytest.raises(UserError, match="another energy-measured run"):
            run_job(cfg)
    assert not runs_by_status(client, "RUNNING")
