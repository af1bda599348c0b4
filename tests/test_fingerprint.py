"""Where a run ran (issue 19, item 4): the fingerprint reads cgroup limits and memory, reaches every run and trial,
and the report keeps the figures of different machines apart."""

from __future__ import annotations

import pandas as pd

from sustainable_ipa.fingerprint import (Fingerprint, cgroup_cpu_limit, cgroup_folders, cgroup_memory_limit,
                                         machine_id, this_machine, usable_cores, usable_memory_gib)
from sustainable_ipa.report.collect import Selection, trials
from sustainable_ipa.report.report_job import report_job
from sustainable_ipa.tracking.runs import log, tracked_run
from test_report import synthetic_store

HYBRID = "4:memory:/jobs/42\n1:cpu,cpuacct:/jobs/42\n0::/\n"  # cgroup v1 controllers beside an empty v2 line


def test_cores_follow_a_cgroup_v2_quota_not_the_machine(tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    (tmp_path / "job" / "memory.max").write_text(str(3 * 1024 ** 3))
    folders = cgroup_folders(tmp_path, "0::/job\n")
    assert cgroup_cpu_limit(folders) == 1.5 and usable_cores(16, cgroup_cpu_limit(folders)) == 2
    assert usable_memory_gib("MemTotal:       25165824 kB\n", cgroup_memory_limit(folders)) == 3  # not the 24 GiB


def test_cgroup_v1_limits_and_no_limit(tmp_path):
    for controller in ("cpu", "memory"):  # v1 mounts each controller apart (cpu is a link to cpu,cpuacct)
        (tmp_path / controller / "jobs" / "42").mkdir(parents=True)
    job = tmp_path / "cpu" / "jobs" / "42"
    (job / "cpu.cfs_quota_us").write_text("300000")
    (job / "cpu.cfs_period_us").write_text("100000")
    (tmp_path / "memory" / "jobs" / "42" / "memory.limit_in_bytes").write_text("9223372036854771712")  # unlimited
    folders = cgroup_folders(tmp_path, HYBRID)
    assert cgroup_cpu_limit(folders) == 3.0 and usable_cores(2, 3.0) == 2  # the affinity is the tighter bound
    assert cgroup_memory_limit(folders) is None
    assert usable_memory_gib("MemTotal:       25165824 kB\n", None) == 24
    (job / "cpu.cfs_quota_us").write_text("-1")  # no quota
    assert cgroup_cpu_limit(folders) is None and usable_cores(2, None) == 2


def test_the_key_names_memory_gpu_and_runtime_versions():
    here = this_machine()
    assert here.memory_gib and here.memory_gib > 0 and here.gpu == "none"  # no GPU on these VMs
    assert dict(here.versions)["torch"] and f"torch {dict(here.versions)['torch']}" in here.key
    other_torch = Fingerprint(here.cpu_model, here.flags, here.cores, here.memory_gib, here.gpu,
                              tuple((n, "0.0" if n == "torch" else v) for n, v in here.versions))
    assert other_torch.key != here.key and other_torch.machine_id != here.machine_id  # a new torch: re-measure
    assert here.tags()["machine_id"] == machine_id(here.key) and here.tags()["machine_cores"] == str(here.cores)


def test_every_run_records_where_it_ran(tmp_path):
    cfg, client, experiment = synthetic_store(tmp_path)
    with tracked_run(client, experiment, "any-run") as run_id:
        pass
    tags = client.get_run(run_id).data.tags
    assert {k: tags[k] for k in this_machine().tags()} == this_machine().tags()


def log_on(client, experiment, machine_key: str, name: str, energy: float):
    tags = {"adaptation": name, "energy_source": "rapl", "weights_kind": "pretrained", "machine": machine_key}
    with tracked_run(client, experiment, name, tags=tags) as job:
        for rep in range(2):
            with tracked_run(client, experiment, f"{name}-rep{rep}", parent_run_id=job, tags=tags) as run:
                log(client, run, params={"hardware.name": "cpu"},
                    metrics={"accuracy_reference": 0.5, "cost_cores": 2, "cost_usd_per_1k": 0.02,
                             "latency_p99_s": 1.0, "energy_j_per_request": energy + rep * 0.01,
                             "sla_attainment": 1.0, "emissions_g_per_1k": 0.1, "energy_j_total": 20.0})


def test_the_report_keeps_two_machines_apart_and_says_so(tmp_path):
    cfg, client, experiment = synthetic_store(tmp_path)
    amd, intel = "AMD EPYC [avx2 avx512f] 2 cores", "Intel Xeon [avx2 amx_bf16] 2 cores"
    log_on(client, experiment, amd, "one", 2.0)
    log_on(client, experiment, intel, "one", 1.0)  # the same config name, another CPU: never one group
    data = trials(client, Selection("synthetic"))
    assert sorted(set(data["hardware"])) == sorted({f"cpu on {machine_id(amd)}", f"cpu on {machine_id(intel)}"})
    folder = report_job(cfg)
    summary = pd.read_csv(folder / "summary.csv")
    assert len(summary) == 2 and set(summary["n"]) == {2}  # one row per machine, each of its own two trials
    page = (folder / "report.html").read_text()
    assert "measured on 2 machines" in page and amd in page and intel in page
