"""Idle subtraction, per-request normalisation, carbon, the idle cache and the machine lock."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fakes import WorkCounterReader
from sustainable_ipa.energy.carbon import carbon_intensity_g_per_kwh, emissions_g
from sustainable_ipa.energy.idle import idle_power_w
from sustainable_ipa.energy.lock import MachineLock
from sustainable_ipa.energy.meter import CounterMeter
from sustainable_ipa.energy.timeseries import power_csv
from sustainable_ipa.errors import UserError
from sustainable_ipa.metrics.energy import energy_metrics


def test_idle_subtraction_and_the_record():
    m = energy_metrics(total_j=300.0, domains_j={"cpu": 250.0, "dram": 50.0}, duration_s=10.0, idle_power_w=20.0,
                       requests_served=50, latency_mean_s=0.5, stage_cpu_s={"detector": 6.0, "classifier": 2.0},
                       carbon_intensity_g_per_kwh=360.0, pue=1.5)
    assert m["energy_j_total"] == 300.0 and m["power_w_mean"] == 30.0
    assert m["energy_j_active"] == pytest.approx(100.0)  # 300 J − 20 W × 10 s
    assert m["energy_j_per_request"] == pytest.approx(2.0)  # 100 J ÷ 50 requests
    assert m["energy_detector_j"] == pytest.approx(75.0) and m["energy_classifier_j"] == pytest.approx(25.0)
    assert m["energy_cpu_j"] == 250.0 and m["energy_dram_j"] == 50.0
    assert m["emissions_g_total"] == pytest.approx(300.0 * 1.5 / 3.6e6 * 360.0)
    assert m["emissions_g_per_1k"] == pytest.approx(2000.0 * 1.5 / 3.6e6 * 360.0)
    assert m["energy_delay_j_s"] == pytest.approx(1.0)
    assert m["idle_power_w"] == 20.0 and m["carbon_intensity_g_per_kwh"] == 360.0


def test_energy_per_request_does_not_depend_on_batch_size():
    """Constant energy per image: J per request must come out the same for batch 1, 4 and 8 (never ÷ batch)."""
    from sustainable_ipa.pipeline.runner import StageSettings
    from test_runner import FakeClassifier, FakeDetector, frames, video_runner

    per_request = {}
    for batch in (1, 4, 8):
        reader = WorkCounterReader()

        class CountingDetector(FakeDetector):
            def __call__(self, images):
                reader.joules += 2.0 * len(images)  # 2 J per frame
                return super().__call__(images)

        meter = CounterMeter(reader, start_polling=False)
        runner = video_runner(CountingDetector(boxes_per_frame=0), FakeClassifier(), StageSettings(batch, 1, 1),
                                StageSettings(batch, 1, 1), isolation="threads")  # the fake counts joules in this process
        meter.begin_window("trial")
        result = runner.run(frames(16), np.zeros(16))
        m = meter.end_window("trial")
        record = energy_metrics(m.total_j, m.energy_j, m.duration_s, 0.0, len(result.requests), 0.1,
                                result.stage_core_s(), 100.0, 1.0)
        per_request[batch] = record["energy_j_per_request"]
    assert per_request == pytest.approx({1: 2.0, 4: 2.0, 8: 2.0})


def test_carbon_intensity_from_codecarbon_tables():
    from codecarbon.input import DataSource

    usa = DataSource().get_global_energy_mix_data()["USA"]["carbon_intensity"]
    assert carbon_intensity_g_per_kwh(None, "USA", None) == pytest.approx(usa)
    assert carbon_intensity_g_per_kwh(123.0, "USA", None) == 123.0
    # regional US figures are lbs/MWh in CodeCarbon's table: 1 lbs/MWh = 0.4536 g/kWh
    regional = DataSource().get_country_emissions_data("usa")["california"]["emissions"]
    assert carbon_intensity_g_per_kwh(None, "USA", "california") == pytest.approx(regional * 0.45359237)
    with pytest.raises(UserError, match="no carbon intensity for country 'XYZ'"):
        carbon_intensity_g_per_kwh(None, "XYZ", None)


def test_emissions_arithmetic():
    assert emissions_g(3.6e6, 400.0) == pytest.approx(400.0)  # 1 kWh at 400 g/kWh
    assert emissions_g(3.6e6, 400.0, pue=1.2) == pytest.approx(480.0)


class FakeIdleMeter:
    def __init__(self, watts):
        self.watts, self.calls = watts, 0

    def begin_window(self, name):
        self.calls += 1

    def end_window(self, name):
        from sustainable_ipa.energy.measurement import Measurement

        return Measurement(2.0, {"cpu": 2.0 * self.watts})


def test_idle_baseline_is_measured_then_cached_per_key_until_it_expires(tmp_path):
    cache, now = tmp_path / "idle.json", [1000.0]
    meter = FakeIdleMeter(25.0)
    measure = lambda key: idle_power_w(meter, 2.0, cache, 60.0, key, now=lambda: now[0], sleep=lambda s: None)
    assert measure("cpu/rapl") == (25.0, False)
    meter.watts = 99.0
    assert measure("cpu/rapl") == (25.0, True)  # cached
    assert measure("cpu/estimate") == (99.0, False)  # another key
    now[0] += 61
    assert measure("cpu/rapl") == (99.0, False)  # expired
    assert json.loads(cache.read_text())["cpu/rapl"]["idle_power_w"] == 99.0
    assert idle_power_w(meter, 0.0, cache, 60.0, "x") == (0.0, False)  # no baseline asked for


def test_the_machine_lock_refuses_a_second_run_naming_the_holder(tmp_path):
    import os

    waiting = []
    with MachineLock(tmp_path / "energy.lock"):
        with pytest.raises(UserError) as err:
            MachineLock(tmp_path / "energy.lock", wait_s=0.5, on_wait=waiting.append, report_every_s=0.2).acquire()
        message = str(err.value)
        assert f"pid {os.getpid()}" in message and "one job at a time" in message
        # both reasons and both settings that change what happens
        assert "latency" in message and "energy counters" in message
        assert "energy.lock_wait_s" in message and "energy.lock_path" in message and "\n" not in message
    # the wait is said in lines (a log shows no spinner): at once, then every report_every_s
    assert 2 <= len(waiting) <= 4 and all(f"held by pid {os.getpid()}" in line for line in waiting)
    with MachineLock(tmp_path / "energy.lock", wait_s=0.0):
        pass  # released: free again


def test_power_csv_has_one_column_per_domain():
    from sustainable_ipa.energy.measurement import PowerSample

    text = power_csv([PowerSample(10.5, {"cpu": 30.0, "dram": 2.0}), PowerSample(11.5, {"cpu": 31.0, "dram": 2.5})], 10.0)
    assert text.splitlines() == ["time_s,cpu_w,dram_w", "0.500,30.000,2.000", "1.500,31.000,2.500"]
