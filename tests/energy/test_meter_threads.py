"""No meter outlives its `close()`: every backend, as the factory builds it (polling on), and a multirun of jobs.

A poller left running polls forever into a growing list and competes with the next run for the CPU it measures.
"""

from __future__ import annotations

import sys
import threading

import pytest

from fakes import FakeNvml, FakePyRapl, PowercapTree
from sustainable_ipa.config import compose
from sustainable_ipa.energy.factory import make_meter
from sustainable_ipa.energy.measurement import EnergySource

POLL_S = 0.01  # poll often, so a poller that is left running is surely running
STOP_GRACE_S = 2.0  # a thread told to stop may finish the read it is in (CodeCarbon cancels its timer unjoined)


def _fake_rapl(tmp_path, monkeypatch):
    PowercapTree(tmp_path / "powercap")


def _fake_nvml(tmp_path, monkeypatch):
    monkeypatch.setattr("sustainable_ipa.energy.nvml._load_pynvml", FakeNvml)


def _fake_pyrapl(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyRAPL", FakePyRapl())


def _no_fake(tmp_path, monkeypatch):
    pass


# name → (fake the counters need, overrides, the source the meter must report: proves the backend was built)
BACKENDS = {
    "rapl": (_fake_rapl, ["energy.meter=rapl"], "rapl"),
    "pyrapl": (_fake_pyrapl, ["energy.meter=pyrapl"], "pyrapl"),
    "nvml": (_fake_nvml, ["energy.meter=nvml"], "nvml"),
    "codecarbon": (_no_fake, ["energy.meter=codecarbon"], "codecarbon"),
    "estimate": (_no_fake, ["energy.meter=estimate"], "estimate"),
    "auto-rapl": (_fake_rapl, [], "rapl"),
    "auto-estimate": (_no_fake, [], "estimate"),
    "rapl-fallback": (_no_fake, ["energy.meter=rapl"], "estimate"),
    "auto-cuda": (lambda t, m: (_fake_rapl(t, m), _fake_nvml(t, m)), ["hardware=cuda"], "nvml+rapl"),
}


def source_tag(meter) -> str:
    return "+".join(getattr(meter, "sources", None) or [meter.source.value])


def survivors(before: set[threading.Thread]) -> list[str]:
    started = [t for t in threading.enumerate() if t not in before]
    for thread in started:
        thread.join(STOP_GRACE_S)
    return [t.name for t in started if t.is_alive()]


@pytest.mark.parametrize("name", list(BACKENDS))
def test_contract_no_thread_of_the_meter_survives_close(name, tmp_path, monkeypatch):
    fake, overrides, source = BACKENDS[name]
    fake(tmp_path, monkeypatch)
    cfg = compose([f"energy.rapl_root={tmp_path}/powercap", f"energy.poll_interval_s={POLL_S}", *overrides])
    before = set(threading.enumerate())
    meter = make_meter(cfg.energy, cfg.hardware, warn=lambda line: None)
    assert source_tag(meter) == source
    meter.begin_window("closed")
    assert meter.end_window("closed").source == EnergySource(source.split("+")[0])
    meter.begin_window("left-open")  # a run that fails mid-window still closes its meter
    meter.close()
    meter.close()  # idempotent: a session closes on error and again on exit
    assert survivors(before) == []


@pytest.mark.slow
def test_a_multirun_of_five_jobs_leaves_the_thread_count_where_it_started(make_cfg):
    from sustainable_ipa.experiment import run_job

    before = set(threading.enumerate())
    for _ in range(5):  # as Hydra's basic launcher runs a sweep: one job after another in this process
        outcome = run_job(make_cfg("trial.requests=2", "energy.idle_s=0.05"), sweep_id="multirun/threads")
        assert outcome.metrics["energy_j_per_request"] > 0  # each job measured through its own meter
    assert [t.name for t in threading.enumerate() if t not in before] == []
