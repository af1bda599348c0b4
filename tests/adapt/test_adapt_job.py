"""`python src/adapt.py` end to end on a tiny space: one MLflow run with the comparison, and a table people can read."""

from __future__ import annotations

from rich.console import Console

from sustainable_ipa.adapt.adapt_job import adapt_job, comparison_table
from sustainable_ipa.fingerprint import this_machine
from sustainable_ipa.search.profiler import cache_path
from sustainable_ipa.search.profiles import ProfileTable

TINY = ["search.space.detector.precision=[fp32]", "search.space.classifier.precision=[fp32]",
        "search.space.detector.runtime=[torch]", "search.space.classifier.runtime=[torch]",
        "search.space.detector.variants=[yolov5n]", "search.space.classifier.variants=[resnet18,resnet34]",
        "search.space.detector.batch_size=[1,2]", "search.space.classifier.batch_size=[1,4]",
        "search.space.detector.threads=[1]", "search.space.classifier.threads=[1]", "profiling.repeats=1",
        "adapt.duration_s=7200", "adapt.step_s=900", "adapt.mean_rps=1.0", "adapt.carbon=diurnal",
        "adapt.job.duration_s=1800", "adapt.job.window_s=3600"]


def test_the_adapt_job_records_the_three_policies_in_one_finished_run(make_cfg, client, tmp_path):
    console = Console(record=True, width=300)
    table = adapt_job(make_cfg(*TINY, f"profiling.cache_dir={tmp_path}/profiles", "profiling.lazy=true"), console)
    assert list(table.index) == ["ipa", "energy", "carbon"]
    assert (table["sla_attainment"] > 0).all() and table.loc["ipa", "energy_saved_fraction_vs_ipa"] == 0
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()],
                               filter_string="tags.adaptation = 'adapt'")
    assert run.info.status == "FINISHED"
    printed = console.export_text()
    assert run.info.run_id in printed.split("this run: ")[-1]  # its own run, the last link printed
    assert "profiling.lazy=true applies to the study" in " ".join(printed.split())  # said, not silently ignored
    assert run.data.metrics["energy_energy_j"] == table.loc["energy", "energy_j"]
    assert {"options_precompute_s", "ipa_decision_ms_p50", "job_saved_fraction"} <= set(run.data.metrics)
    # profiles taken on a busy machine are used, never silently: the run says how many
    flagged = ProfileTable.load(cache_path(tmp_path / "profiles", "cpu", this_machine())).flagged()
    assert run.data.tags["profiles_flagged"] == str(len(flagged))
    assert run.data.tags["profiles_fingerprint"] == this_machine().key  # the machine the profiles are of
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"comparison.csv", "intervals_ipa.csv", "intervals_energy.csv", "intervals_carbon.csv",
            "timeline.png"} <= artifacts


def test_the_comparison_reads_in_full_in_an_80_column_terminal():
    import pandas as pd

    table = pd.DataFrame({"energy_j": [1.472e6, 1.412e6], "energy_saved_fraction_vs_ipa": [0.0, 0.0408],
                          "accuracy_given_up_vs_ipa": [0.0, 0.00626]}, index=["ipa", "energy"])
    job = {"job_emissions_now_g": 18.6, "job_emissions_best_g": 17.1, "job_best_start_s": 3600.0,
           "job_saved_fraction": 0.08}
    console = Console(width=80, record=True)
    console.print(comparison_table(table, job))
    text = console.export_text()
    # a saving is a share of IPA's figure, shown as one, never in a column named in joules
    assert "energy_saved_fraction_vs_ipa" in text and "accuracy_given_up_vs_ipa" in text and "4.1%" in text
    words = " ".join(text.split())  # the caption wraps
    assert "…" not in text and "composed predictions" in words and "flat" not in words
    console = Console(width=80, record=True)
    console.print(comparison_table(table, job, flat_carbon=True))
    assert "the carbon intensity is flat" in " ".join(console.export_text().split())
