"""The idle baseline cannot poison later runs: the estimate's is its model's static power, a measured one is cached
under the machine's fingerprint and the meter, and a cache entry no meter could give is ignored."""

from __future__ import annotations

import json

import pytest

from fakes import PowercapTree
from sustainable_ipa.config import compose
from sustainable_ipa.energy.session import EnergySession
from sustainable_ipa.fingerprint import Fingerprint, read_fingerprint


def session(tmp_path, *overrides, warn=None) -> EnergySession:
    cfg = compose([f"energy.idle_cache={tmp_path}/idle.json", f"energy.lock_path={tmp_path}/energy.lock",
                   "energy.idle_s=0.05", *overrides])
    return EnergySession(cfg.energy, cfg.hardware, warn)


def test_the_estimates_idle_power_is_its_models_static_power_never_cached_nor_called_measured(tmp_path):
    # the sequence that recorded negative energy: a run with an odd constant, then a plain run
    constants = ["energy.meter=estimate", "energy.power_model=constants"]
    with session(tmp_path, *constants, "hardware.estimate.idle_w=35") as odd:
        assert (odd.idle_power_w, odd.tags()["idle_baseline"]) == (35.0, "modelled")
    with session(tmp_path, *constants) as plain:
        assert (plain.idle_power_w, plain.tags()["idle_baseline"]) == (20.0, "modelled")
    with session(tmp_path, "energy.meter=estimate") as reference:
        assert reference.idle_power_w == pytest.approx(reference.meter.curve.static_w)
        assert reference.tags()["power_model"] == "boavizta"
    assert not (tmp_path / "idle.json").exists()
    with session(tmp_path, "energy.meter=estimate", "energy.idle_s=0") as none:
        assert (none.idle_power_w, none.tags()["idle_baseline"]) == (0.0, "none")


def rapl(tmp_path):
    if not (tmp_path / "powercap").exists():
        PowercapTree(tmp_path / "powercap")  # counters that stand still: 0 W idle
    return ["energy.meter=rapl", f"energy.rapl_root={tmp_path}/powercap"]


def test_a_measured_baseline_is_cached_under_the_machines_fingerprint(tmp_path, monkeypatch):
    with session(tmp_path, *rapl(tmp_path)) as first:
        assert first.tags()["idle_baseline"] == "measured"
    with session(tmp_path, *rapl(tmp_path)) as second:
        assert second.tags()["idle_baseline"] == "cached"
    [key] = json.loads((tmp_path / "idle.json").read_text())
    assert "rapl" in key and "cores" in key  # the meter and the machine, not the hardware config's name
    # the same hardware name on another VM (as from one day to the next here): measured again, not reused
    import sustainable_ipa.energy.session as session_module

    monkeypatch.setattr(session_module, "this_machine", lambda: Fingerprint("Another CPU", ("amx_bf16",), 2))
    with session(tmp_path, *rapl(tmp_path)) as elsewhere:
        assert elsewhere.tags()["idle_baseline"] == "measured"


def test_idle_cache_s_0_neither_reads_nor_writes_the_cache(tmp_path):
    with session(tmp_path, *rapl(tmp_path), "energy.idle_cache_s=0") as s:
        assert s.tags()["idle_baseline"] == "measured"
    assert not (tmp_path / "idle.json").exists()


def test_a_cached_baseline_no_meter_could_give_is_ignored_and_said(tmp_path):
    with session(tmp_path, *rapl(tmp_path)) as s:
        key = s.idle_key()
    (tmp_path / "idle.json").write_text(json.dumps({key: {"idle_power_w": -20.0, "measured_at": 4e9, "idle_s": 5}}))
    said = []
    with session(tmp_path, *rapl(tmp_path), warn=said.append) as s:
        assert s.idle_power_w == pytest.approx(0.0) and s.tags()["idle_baseline"] == "measured"
    assert len(said) == 1 and "-20.0 W" in said[0]


def test_the_fingerprint_names_the_cpu_its_speed_flags_and_the_cores_given():
    cpuinfo = ("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n\n"
               "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    fingerprint = read_fingerprint(cpuinfo, cores=2)
    assert fingerprint == Fingerprint("AMD EPYC", ("avx2", "avx512f", "avx512_vnni", "avx512_bf16"), 2)
    assert fingerprint.key == "AMD EPYC [avx2 avx512f avx512_vnni avx512_bf16] 2 cores"


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "{not json", b"\xff\xfe not utf-8",
                                     '{"KEY": {"idle_power_w": "x"}}', '{"KEY": [1]}'])
def test_a_corrupt_idle_cache_is_rebuilt_with_a_warning_not_raised(tmp_path, content):
    with session(tmp_path, *rapl(tmp_path)) as s:
        key = s.idle_key()
    cache = tmp_path / "idle.json"
    if isinstance(content, bytes):
        cache.write_bytes(content)
    else:
        cache.write_text(content.replace("KEY", key.replace('"', '\\"')))
    said = []
    with session(tmp_path, *rapl(tmp_path), warn=said.append) as s:
        assert s.tags()["idle_baseline"] == "measured"
    assert len(said) == 1
    assert json.loads(cache.read_text())[key]["idle_power_w"] == pytest.approx(0.0)  # rebuilt, readable again
