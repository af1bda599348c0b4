"""One contract for every meter, then each backend's own behaviour against fakes (no RAPL or GPU here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import MAX_RANGE_UJ, FakeNvml, PowercapTree
from sustainable_ipa.config import compose
from sustainable_ipa.energy.codecarbon_meter import CodeCarbonMeter
from sustainable_ipa.energy.estimate import EstimateMeter
from sustainable_ipa.energy.factory import make_meter
from sustainable_ipa.energy.measurement import EnergySource
from sustainable_ipa.energy.meter import CounterMeter, CounterReader, MeterUnavailable
from sustainable_ipa.energy.nvml import NvmlReader
from sustainable_ipa.energy.power_reference import constants_model
from sustainable_ipa.energy.rapl import DEFAULT_ROOT, RaplReader


class Ticker:
    """A clock that advances by `step` at every read."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def rapl_meter(tmp_path):
    tree = PowercapTree(tmp_path / "powercap")
    return CounterMeter(RaplReader(tree.root), start_polling=False), lambda: [tree.add_uj(z, 1_000_000) for z in tree.zones]


def nvml_meter(tmp_path):
    nvml = FakeNvml()

    def work():
        for i in nvml.energy_mj:
            nvml.energy_mj[i] += 500
    return CounterMeter(NvmlReader((0, 1), nvml=nvml), start_polling=False), work


def nvml_power_meter(tmp_path):
    return CounterMeter(NvmlReader((0,), nvml=FakeNvml(counter=False), clock=Ticker(0.1)), start_polling=False), lambda: None


def estimate_meter(tmp_path):
    model = constants_model(10.0, 20.0, vcpus=2)
    return EstimateMeter(model.curve, (), 2, run_cpu_s=Ticker(0.05), busy_cpu_s=Ticker(0.05), clock=Ticker(0.1),
                         start_polling=False), lambda: None


def codecarbon_meter(tmp_path):
    return CodeCarbonMeter("USA", measure_power_s=0.5), lambda: sum(i * i for i in range(200_000))


METERS = {"rapl": rapl_meter, "nvml": nvml_meter, "nvml-power": nvml_power_meter, "estimate": estimate_meter,
          "codecarbon": codecarbon_meter}


@pytest.fixture(params=list(METERS))
def meter_and_work(request, tmp_path):
    meter, work = METERS[request.param](tmp_path)
    yield meter, work
    meter.close()


def test_contract_a_window_measures_work_in_joules(meter_and_work):
    meter, work = meter_and_work
    meter.begin_window("w")
    work()
    m = meter.end_window("w")
    assert m.duration_s > 0 and m.source == meter.source
    assert m.energy_j and all(v >= 0 for v in m.energy_j.values())
    assert m.total_j == pytest.approx(sum(m.energy_j.values()))


def test_contract_unknown_window_is_an_error(meter_and_work):
    meter, _ = meter_and_work
    with pytest.raises(KeyError):
        meter.end_window("never-opened")


@pytest.mark.parametrize("name", ["rapl", "nvml", "nvml-power", "estimate"])
def test_contract_windows_nest_and_overlap(name, tmp_path):
    meter, work = METERS[name](tmp_path)
    meter.begin_window("outer")
    work()
    meter.begin_window("inner")
    work()
    inner = meter.end_window("inner")
    work()
    outer = meter.end_window("outer")
    assert outer.total_j > inner.total_j > 0
    assert outer.duration_s > inner.duration_s


def test_rapl_counts_packages_and_dram_never_cores(tmp_path):
    tree = PowercapTree(tmp_path)
    meter = CounterMeter(RaplReader(tmp_path), start_polling=False)
    meter.begin_window("w")
    tree.add_uj("intel-rapl:0", 3_000_000)
    tree.add_uj("intel-rapl:1", 2_000_000)
    tree.add_uj("intel-rapl:0:0", 1_000_000)  # core: inside package 0 already
    tree.add_uj("intel-rapl:1:1", 500_000)  # dram of package 1
    m = meter.end_window("w")
    assert m.energy_j == pytest.approx({"cpu": 5.0, "dram": 0.5})
    assert m.source == EnergySource.RAPL


def test_rapl_recovers_one_wrap(tmp_path):
    tree = PowercapTree(tmp_path, packages=1)
    tree.set_uj("intel-rapl:0", MAX_RANGE_UJ - 1_000_000)
    meter = CounterMeter(RaplReader(tmp_path), start_polling=False)
    meter.begin_window("w")
    tree.add_uj("intel-rapl:0", 3_000_000)  # wraps past max_energy_range_uj
    assert meter.end_window("w").energy_j["cpu"] == pytest.approx(3.0)


def test_rapl_recovers_two_wraps_in_one_window_when_polled(tmp_path):
    small = 10_000_000  # a 10 J range wraps quickly
    tree = PowercapTree(tmp_path, packages=1, max_range_uj=small)
    meter = CounterMeter(RaplReader(tmp_path), start_polling=False)
    meter.begin_window("w")
    for _ in range(5):  # 5 × 6 J = 30 J: three wraps, each seen by a poll
        tree.add_uj("intel-rapl:0", 6_000_000, max_range_uj=small)
        meter.poll()
    assert meter.end_window("w").energy_j["cpu"] == pytest.approx(30.0)


def test_rapl_background_polling_records_power_samples(tmp_path):
    import time

    tree = PowercapTree(tmp_path, packages=1)
    meter = CounterMeter(RaplReader(tmp_path), poll_interval_s=0.05)
    try:
        meter.begin_window("w")
        for _ in range(4):
            tree.add_uj("intel-rapl:0", 1_000_000)
            time.sleep(0.06)
        m = meter.end_window("w")
    finally:
        meter.close()
    assert m.energy_j["cpu"] == pytest.approx(4.0)
    assert len(meter.samples()) >= 3 and all("cpu" in s.power_w for s in meter.samples())


def test_rapl_permission_denied_names_the_cve_and_the_fix(tmp_path, monkeypatch):
    PowercapTree(tmp_path, packages=1)
    real = Path.read_text

    def denied(self, *args, **kwargs):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(MeterUnavailable) as err:
        RaplReader(tmp_path)
    message = str(err.value)
    assert "CVE-2020-8694" in message and "chmod" in message and "\n" not in message


def test_rapl_without_a_tree_is_unavailable(tmp_path):
    with pytest.raises(MeterUnavailable, match="no RAPL package"):
        RaplReader(tmp_path / "nothing")


def test_nvml_energy_counter_is_read_in_joules():
    nvml = FakeNvml()
    meter = CounterMeter(NvmlReader((0, 1), nvml=nvml), start_polling=False)
    meter.begin_window("w")
    nvml.energy_mj[0] += 2_000
    nvml.energy_mj[1] += 3_000
    assert meter.end_window("w").energy_j == pytest.approx({"gpu": 5.0})


def test_nvml_without_the_counter_integrates_power():
    reader = NvmlReader((0,), nvml=FakeNvml(counter=False), clock=Ticker(0.5))
    assert reader.integrates_power
    meter = CounterMeter(reader, start_polling=False)
    meter.begin_window("w")
    meter.poll()
    # 150 W sampled at each read, 0.5 s apart: two more reads after begin → 150 J
    assert meter.end_window("w").energy_j["gpu"] == pytest.approx(150.0)


def test_nvml_bad_gpu_index_is_unavailable():
    with pytest.raises(MeterUnavailable, match="cannot open GPU"):
        NvmlReader((7,), nvml=FakeNvml())


def test_the_old_constants_give_the_old_arithmetic():
    # 2 CPU seconds of the run in 4 s on 2 vCPUs, nothing else busy: 2 s × 10 W per core + 4 s × 20 W idle
    run, busy, clock = iter([0.0, 0.0, 2.0]), iter([0.0, 0.0, 2.0]), iter([0.0, 0.0, 4.0])
    model = constants_model(active_w_per_core=10.0, idle_w=20.0, vcpus=2)
    meter = EstimateMeter(model.curve, (), 2, run_cpu_s=lambda: next(run), busy_cpu_s=lambda: next(busy),
                          clock=lambda: next(clock), start_polling=False)
    meter.begin_window("w")
    assert meter.end_window("w").total_j == pytest.approx(2.0 * 10.0 + 4.0 * 20.0)


def energy_cfg(tmp_path, *overrides):
    cfg = compose([f"energy.rapl_root={tmp_path}/powercap", "energy.poll_interval_s=0", *overrides])
    return cfg.energy, cfg.hardware


def test_default_paths_are_the_real_ones():
    assert compose().energy.rapl_root == DEFAULT_ROOT == "/sys/class/powercap"
    assert RaplReader.__init__.__defaults__ == (DEFAULT_ROOT,)


def test_auto_takes_rapl_when_readable(tmp_path):
    PowercapTree(tmp_path / "powercap")
    meter = make_meter(*energy_cfg(tmp_path))
    assert meter.source == EnergySource.RAPL and meter.fallback_reason is None


def test_auto_without_counters_falls_back_to_the_estimate_and_records_why(tmp_path):
    meter = make_meter(*energy_cfg(tmp_path))
    assert meter.source == EnergySource.ESTIMATE
    assert "no readable RAPL" in meter.fallback_reason


@pytest.mark.parametrize("name", ["rapl", "pyrapl"])
def test_an_unreadable_explicit_meter_warns_and_falls_back(name, tmp_path):
    warnings = []
    meter = make_meter(*energy_cfg(tmp_path, f"energy.meter={name}"), warn=warnings.append)
    assert meter.source == EnergySource.ESTIMATE
    assert meter.fallback_reason.startswith(f"energy.meter={name} unavailable")
    assert len(warnings) == 1 and "Fix:" in warnings[0]


def test_fallback_error_makes_it_an_error(tmp_path):
    with pytest.raises(MeterUnavailable):
        make_meter(*energy_cfg(tmp_path, "energy.meter=rapl", "energy.fallback=error"))


def test_explicit_meters_are_built(tmp_path):
    assert make_meter(*energy_cfg(tmp_path, "energy.meter=estimate")).source == EnergySource.ESTIMATE
    meter = make_meter(*energy_cfg(tmp_path, "energy.meter=codecarbon"))
    assert meter.source == EnergySource.CODECARBON
    meter.close()


def test_codecarbon_measures_one_window_at_a_time():
    meter = CodeCarbonMeter("USA")
    meter.begin_window("a")
    with pytest.raises(RuntimeError, match="one window at a time"):
        meter.begin_window("b")
    assert meter.end_window("a").source == EnergySource.CODECARBON


def test_a_counter_that_goes_backwards_without_wrapping_is_refused_in_one_line():
    readings = iter([{"cpu": 100.0}, {"cpu": 100.0}, {"cpu": 40.0}])

    class Backwards(CounterReader):
        source = EnergySource.RAPL

        def read_j(self):
            return next(readings)

    meter = CounterMeter(Backwards(), start_polling=False)
    meter.begin_window("w")
    with pytest.raises(MeterUnavailable, match="went backwards") as err:
        meter.end_window("w")
    assert "Fix:" in str(err.value) and "\n" not in str(err.value)
