"""The estimate as a power model of the load: curves, the reference data for a fingerprint, the model interval, and
calibration on a fake powercap tree driven by a known curve."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fakes import PowercapTree
from sustainable_ipa.config import compose
from sustainable_ipa.energy.calibrate_job import calibrate_job
from sustainable_ipa.energy.calibration import Calibration, calibration_for, fit, save
from sustainable_ipa.energy.estimate import EstimateMeter
from sustainable_ipa.energy.factory import estimate_model
from sustainable_ipa.energy.measurement import Measurement
from sustainable_ipa.energy.meter import CounterMeter
from sustainable_ipa.energy.power_curve import LoadSample, PowerCurve
from sustainable_ipa.energy.rapl import RaplReader
from sustainable_ipa.energy.power_reference import cpu_generation, reference_model, tdp_per_thread_w
from sustainable_ipa.errors import UserError
from sustainable_ipa.fingerprint import Fingerprint
from sustainable_ipa.metrics.energy import window_energy_metrics

CONCAVE = PowerCurve("test", "hand-made", (0.0, 0.5, 1.0), (10.0, 30.0, 40.0), memory_w=2.0)


def test_a_curves_energy_of_a_synthetic_load_trace_matches_the_hand_computed_one():
    samples = [LoadSample(1.0, 1.0, 0.25, 1.0),   # P(0.25) = 20 W + 2 W memory, all the run's
               LoadSample(3.0, 2.0, 1.0, 0.5),    # P(1) = 40 W: the run is half of the busy time
               LoadSample(4.0, 1.0, 0.0, 0.0)]    # idle
    # static 10 W of CPU and 2 W of memory over 4 s; active (20 − 10)·1·1 s + (40 − 10)·0.5·2 s
    assert CONCAVE.energy_j(samples) == pytest.approx({"cpu": 10 * 4 + 10 + 30, "dram": 2 * 4})
    assert CONCAVE.static_w == 12.0 and CONCAVE.power_w(0.75) == pytest.approx(37.0)


@pytest.mark.parametrize("loads, watts", [((0.0, 0.5), (1.0, 2.0)), ((0.0, 0.6, 0.5, 1.0), (1, 2, 3, 4)),
                                          ((0.0, 1.0), (-1.0, 2.0))])
def test_a_curve_that_is_no_power_curve_is_refused(loads, watts):
    with pytest.raises(ValueError):
        PowerCurve("bad", "", loads, watts)


HIGH = PowerCurve("high", "", (0.0, 1.0), (20.0, 80.0))


def sampled_meter() -> EstimateMeter:
    """2 vCPUs; each 1 s step: the machine is busy 1.5 CPU-s (load 0.75), of which the run is 0.75 (share 0.5)."""
    clock, run, busy = iter(np.arange(0, 10.0)), iter(np.arange(0, 10.0) * 0.75), iter(np.arange(0, 10.0) * 1.5)
    return EstimateMeter(CONCAVE, (HIGH,), 2, run_cpu_s=lambda: next(run), busy_cpu_s=lambda: next(busy),
                         clock=lambda: float(next(clock)), start_polling=False)


def test_the_meter_samples_the_load_and_the_runs_share_and_carries_the_models_interval():
    meter = sampled_meter()
    meter.begin_window("w")
    meter.poll()
    m = meter.end_window("w")
    assert m.duration_s == pytest.approx(2.0)
    assert m.energy_j["cpu"] == pytest.approx(2 * (10 + (37 - 12) * 0.5))
    assert m.static_w == 12.0
    [alternative] = m.alternatives
    assert alternative.static_w == 20.0 and alternative.energy_j["cpu"] == pytest.approx(2 * (20 + 45 * 0.5))


def test_the_window_metrics_carry_the_model_interval_around_the_central_figure():
    central = Measurement(10.0, {"cpu": 200.0}, static_w=12.0, model="curve",
                          alternatives=(Measurement(10.0, {"cpu": 150.0}, static_w=10.0, model="low-one"),
                                        Measurement(10.0, {"cpu": 400.0}, static_w=30.0, model="high")))
    m = window_energy_metrics(central, 12.0, 10, 0.1, {"a": 1.0}, 400.0, 1.0)
    # active: 200 − 120 = 80; 150 − 100 = 50; 400 − 300 = 100 J over 10 requests
    assert (m["energy_j_per_request_low"], m["energy_j_per_request"], m["energy_j_per_request_high"]) == \
        pytest.approx((5.0, 8.0, 10.0))
    assert (m["energy_j_total_low"], m["energy_j_total_high"]) == (150.0, 400.0)
    assert m["emissions_g_per_1k_low"] < m["emissions_g_per_1k"] < m["emissions_g_per_1k_high"]
    assert "carbon_intensity_g_per_kwh_low" not in m
    assert (m["energy_j_per_request_model_low_one"], m["energy_j_per_request_model_high"]) == pytest.approx((5.0, 10.0))
    measured = window_energy_metrics(Measurement(10.0, {"cpu": 200.0}), 12.0, 10, 0.1, {"a": 1.0}, 400.0, 1.0)
    assert not [k for k in measured if k.endswith(("_low", "_high"))]  # a measurement has no model interval


AMD_VM = Fingerprint("AMD EPYC", ("avx2", "avx512f", "avx512_bf16"), 2, 24)


def test_the_reference_model_knows_a_vms_generation_by_its_flags_and_a_named_part_by_its_name():
    assert cpu_generation(AMD_VM).code_name == "Genoa"
    assert cpu_generation(Fingerprint("Intel(R) Xeon(R) Platinum 8480+", ("amx_bf16",), 2)).part == \
        "Intel Xeon Platinum 8480+"
    named = reference_model(Fingerprint("Intel(R) Xeon(R) Platinum 8480+", ("amx_bf16",), 4, 16))
    # the part's own TDP per thread (350 W over 112 threads) at Teads' 1.02 × TDP at full load, 4 vCPUs
    assert named.curve.cpu_w[-1] == pytest.approx(350 / 112 * 4 * 1.02, rel=0.01)
    assert named.curve.cpu_w[0] == pytest.approx(350 / 112 * 4 * 0.12, rel=0.02)


def test_the_reference_models_interval_spans_quartiles_ccf_and_the_straight_line():
    model = reference_model(AMD_VM)
    low_w, central_w, high_w = tdp_per_thread_w(cpu_generation(AMD_VM))
    assert low_w < central_w < high_w
    names = {c.name for c in model.alternatives}
    assert names == {"boavizta-q1", "boavizta-q3", "boavizta-linear", "ccf"}
    ccf = next(c for c in model.alternatives if c.name == "ccf")
    # no CCF row for Genoa: its average over microarchitectures, 0.74–3.5 W per vCPU, and 0.392 W per GB
    assert (ccf.power_w(0) - ccf.memory_w, ccf.power_w(1) - ccf.memory_w) == pytest.approx((1.48, 7.0))
    assert ccf.memory_w == pytest.approx(0.392 * 24)
    # the curve is concave (Teads): at 10 % load a third of full power, where the straight line gives a fifth
    curve = model.curve
    assert (curve.power_w(0.1) - curve.memory_w) / (curve.power_w(1) - curve.memory_w) == pytest.approx(0.32 / 1.02, rel=0.03)
    assert model.tags["power_model"] == "boavizta" and "Genoa" in model.tags["power_model_cpu"]


def synthetic_w(load: float) -> float:
    """A package's curve of known shape, concave and steepest near idle as measured servers are (SPECpower), and
    not piecewise linear: 60 W idle, 200 W at full load."""
    return 60.0 + 140.0 * (1 - math.exp(-3 * load)) / (1 - math.exp(-3))


class DrivenTree:
    """A fake machine: the loads the calibration holds become busy CPU time on a fake clock and joules in a fake
    powercap tree, per `synthetic_w`."""

    def __init__(self, root, vcpus: int):
        self.tree = PowercapTree(root, packages=1)
        self.vcpus, self.now, self.busy_s = vcpus, 0.0, 0.0

    def clock(self) -> float:
        return self.now

    def hold(self, level: float, vcpus: int):
        machine = self

        class Held:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                pass

            def settle(self):
                machine.advance(level, 1.0)

            def wait(self, seconds):
                machine.advance(level, seconds)
        return Held()

    def advance(self, level: float, seconds: float) -> None:
        self.now += seconds
        self.busy_s += level * seconds * self.vcpus
        self.tree.add_uj("intel-rapl:0", int(synthetic_w(level) * seconds * 1e6))


def test_calibration_on_a_fake_powercap_tree_recovers_the_curve_within_5_percent(tmp_path, monkeypatch):
    machine = DrivenTree(tmp_path / "powercap", vcpus=2)
    meter = CounterMeter(RaplReader(machine.tree.root), clock=machine.clock, start_polling=False)
    cfg = compose([f"energy.calibration={tmp_path}/calibration.json", f"energy.lock_path={tmp_path}/lock",
                   "energy.calibration_dwell_s=5"])
    calibration = calibrate_job(cfg, meter, hold_load=machine.hold, busy_cpu_s=lambda: machine.busy_s)
    loads = np.linspace(0, 1, 201)
    fitted = np.interp(loads, calibration.loads, calibration.watts)
    # its interval: what a measured load left out and read from its neighbours misses by (the curve bends between)
    assert 0.005 < calibration.max_error < 0.05
    assert np.max(np.abs(fitted - [synthetic_w(u) for u in loads]) / [synthetic_w(u) for u in loads]) < 0.05
    # stored, and the estimate of a VM with the same CPU model uses it, scaled to its vCPUs and labelled
    here = Fingerprint(calibration.cpu_model, (), 1, 8)
    assert calibration_for(cfg.energy.calibration, here) == calibration
    import sustainable_ipa.energy.factory as factory

    monkeypatch.setattr(factory, "this_machine", lambda: here)
    model = estimate_model(cfg.energy, cfg.hardware)
    assert model.tags["power_model"] == "calibrated" and calibration.machine in model.tags["power_model_source"]
    assert model.curve.power_w(1.0) == pytest.approx(calibration.watts[-1] / calibration.threads)
    assert [c.power_w(1.0) for c in model.alternatives] == pytest.approx(
        [model.curve.power_w(1.0) * (1 - calibration.max_error), model.curve.power_w(1.0) * (1 + calibration.max_error)])


def test_no_calibration_where_no_counter_reads(tmp_path):
    cfg = compose([f"energy.rapl_root={tmp_path}/none", f"energy.calibration={tmp_path}/c.json",
                   f"energy.lock_path={tmp_path}/lock"])
    with pytest.raises(UserError, match="machine with RAPL"):
        calibrate_job(cfg)
    assert not (tmp_path / "c.json").exists()


def test_no_calibration_from_a_gpu_counter(tmp_path):
    from fakes import FakeNvml

    from sustainable_ipa.energy.nvml import NvmlReader

    cfg = compose([f"energy.calibration={tmp_path}/c.json", f"energy.lock_path={tmp_path}/lock"])
    with pytest.raises(UserError, match="fitted to RAPL only"):
        calibrate_job(cfg, CounterMeter(NvmlReader((0,), nvml=FakeNvml()), start_polling=False))


def test_a_calibration_of_another_cpu_model_is_not_used(tmp_path):
    save(tmp_path / "c.json", Calibration("Intel Xeon 8480+", "elsewhere", 112, (0.0, 1.0), (100.0, 350.0), 0.02, "t"))
    assert calibration_for(tmp_path / "c.json", AMD_VM) is None
    (tmp_path / "broken.json").write_text("{not json")
    assert calibration_for(tmp_path / "broken.json", AMD_VM) is None


def test_the_fit_extends_to_the_ends_and_reports_its_error():
    loads, watts, error = fit([(0.1, 20.0), (0.5, 60.0), (0.9, 100.0)])
    assert (loads[0], loads[-1]) == (0.0, 1.0) and (watts[0], watts[-1]) == pytest.approx((10.0, 110.0))
    assert error == pytest.approx(0.0)  # on a straight line, a point left out is read back exactly
    # two pairs at one load are averaged; a noisy reading below the last is held at it: no power falls with load
    loads, watts, error = fit([(0.0, 50.0), (0.5, 90.0), (0.5, 110.0), (0.7, 95.0), (1.0, 150.0)])
    assert loads == (0.0, 0.5, 0.7, 1.0) and watts == pytest.approx((50.0, 100.0, 100.0, 150.0))
    assert error > 0


def test_a_calibration_store_entry_no_calibration_could_give_is_ignored_and_said(tmp_path):
    import json

    good = Calibration("AMD EPYC", "here", 2, (0.0, 1.0), (10.0, 20.0), 0.01, "t")
    save(tmp_path / "c.json", good)
    store = json.loads((tmp_path / "c.json").read_text())
    for name, entry in {"loads": {"loads": [0.1, 1.0]}, "threads": {"threads": 0}, "text": {"threads": "4"}}.items():
        store["AMD EPYC"][name] = {**store["AMD EPYC"]["here"], "machine": name, "measured_at": "u", **entry}
    (tmp_path / "c.json").write_text(json.dumps(store))
    said = []
    assert calibration_for(tmp_path / "c.json", AMD_VM, said.append) == good
    assert len(said) == 3


def test_a_composite_keeps_each_curves_own_static_power_in_its_interval():
    from sustainable_ipa.energy.composite import CompositeMeter

    alone, composite = sampled_meter(), CompositeMeter([sampled_meter()])
    for meter in (alone, composite):
        meter.begin_window("w")
    # the composite's idle baseline is measured: the central curve's 12 W; the high curve idles at 20 W, 8 W more
    as_composite = window_energy_metrics(composite.end_window("w"), 12.0, 1, 1.0, {"a": 1.0}, 400.0, 1.0)
    as_estimate = window_energy_metrics(alone.end_window("w"), 12.0, 1, 1.0, {"a": 1.0}, 400.0, 1.0)
    assert as_composite["energy_j_active_high"] == pytest.approx(as_estimate["energy_j_active_high"])


def test_the_calibrate_entry_point_refuses_in_one_line_where_no_counter_reads(tmp_path):
    import subprocess
    import sys

    from helpers import PROJECT_ROOT

    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "src" / "calibrate.py"),
                           f"energy.rapl_root={tmp_path}/none", f"energy.calibration={tmp_path}/c.json",
                           f"energy.lock_path={tmp_path}/lock"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    [line] = [l for l in done.stderr.splitlines() if l.strip()]
    assert line.startswith("error:") and "machine with RAPL" in line


def test_energy_power_model_ccf_takes_ccfs_line_as_the_estimate_with_boaviztas_curves_as_its_range(tmp_path):
    cfg = compose([f"energy.calibration={tmp_path}/none.json", "energy.power_model=ccf"])
    model = estimate_model(cfg.energy, cfg.hardware)
    assert model.curve.name == "ccf" and model.tags["power_model"] == "ccf"
    assert "boavizta" in {c.name for c in model.alternatives} and "ccf" not in {c.name for c in model.alternatives}
