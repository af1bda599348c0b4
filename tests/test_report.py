"""Reports built from synthetic runs with known correlations and a known Pareto change."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from sustainable_ipa.config import compose
from sustainable_ipa.metrics.record import aggregate
from sustainable_ipa.report.analysis import (answer, correlation, distinguishable, energy_entries, pareto_change,
                                             summarise)
from sustainable_ipa.report.report_job import report_job
from sustainable_ipa.tracking.runs import log, tracked_run
from sustainable_ipa.tracking.store import open_store

# adaptation: accuracy, cores, p99 latency, J per request. Energy follows cores exactly, except "frugal", which is
# dominated on accuracy, cores and latency by "small" but needs far less energy: only energy makes it optimal.
CONFIGS = {
    "tiny": (0.30, 2, 0.5, 2.0), "small": (0.40, 3, 0.6, 3.0), "frugal": (0.39, 3, 0.7, 1.0),
    "medium": (0.50, 4, 0.8, 4.0), "large": (0.55, 6, 1.2, 6.0), "huge": (0.56, 8, 2.0, 8.0),
}


def synthetic_store(tmp_path, *overrides):
    """(config, client, experiment id) of the experiment `synthetic` in a store under tmp_path."""
    cfg = compose([f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db", f"tracking.artifact_root={tmp_path}/art",
                   f"report.out_dir={tmp_path}/reports", "tracking.experiment=synthetic", *overrides])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    return cfg, client, open_store(cfg.tracking.uri, "synthetic", cfg.tracking.artifact_root)


def log_synthetic(tmp_path, energy_source=lambda name: "rapl"):
    cfg, client, experiment = synthetic_store(tmp_path)
    for name, (acc, cores, p99, energy) in CONFIGS.items():
        tags = {"adaptation": name, "energy_source": energy_source(name), "weights_kind": "pretrained"}
        with tracked_run(client, experiment, name, tags=tags) as job:
            per_repetition = []
            for rep, noise in enumerate((-0.01, 0.0, 0.01)):
                with tracked_run(client, experiment, f"{name}-rep{rep}", parent_run_id=job, tags=tags) as run:
                    knobs = {f"adaptation.{stage}.{knob}": value for stage in ("detector", "classifier")
                             for knob, value in (("precision", "int8"), ("runtime", "openvino"))} \
                        if name == "frugal" else {}  # frugal is the int8 one; the others predate the knobs
                    per_repetition.append({"accuracy_reference": acc, "cost_cores": cores,
                                           "cost_usd_per_1k": cores * 0.01, "latency_p99_s": p99 * (1 + noise),
                                           "energy_j_per_request": energy * (1 + noise), "sla_attainment": 1.0,
                                           "emissions_g_per_1k": energy * 0.1, "energy_j_total": energy * 20})
                    log(client, run, params={"hardware.name": "cpu", "pipeline.stages": '["detector", "classifier"]',
                                             **knobs}, metrics=per_repetition[-1])
            log(client, job, metrics=aggregate(per_repetition))  # the job's means, as a job with repetitions logs
    return cfg, client


def test_report_finds_the_known_structure(tmp_path):
    cfg, client = log_synthetic(tmp_path)
    folder = report_job(cfg)
    summary = pd.read_csv(folder / "summary.csv")
    assert sorted(summary["adaptation"]) == sorted(CONFIGS) and set(summary["n"]) == {3}
    row = summary.set_index("adaptation").loc["medium"]
    assert row["energy_j_per_request"] == pytest.approx(4.0)
    assert row["energy_j_per_request_ci95_low"] < 4.0 < row["energy_j_per_request_ci95_high"]
    numerics = summary.set_index("adaptation")["numerics"]  # each configuration's precision/runtime per stage
    assert numerics["frugal"] == "int8/openvino + int8/openvino" and numerics["medium"] == "fp32/torch + fp32/torch"
    corr = pd.read_csv(folder / "correlations.csv").set_index("energy per request vs")
    assert corr.loc["cost_usd_per_1k", "Pearson r"] > 0.7  # energy follows cost except for one configuration
    html = (folder / "report.html").read_text()
    assert "frugal become Pareto-optimal only when energy counts" in html
    assert "int8/openvino + int8/openvino" in html  # the table shows the knobs
    assert html.count('class="plotly-graph-div"') >= 7  # every figure interactive, in the page
    assert html.count("Plotly.newPlot(") >= 7 and html.count("plotly.js v") == 1  # plotly.js inlined once
    outside_scripts = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)
    assert "http" not in outside_scripts.replace(EPA_URL, "")  # nothing fetched from the network
    assert not re.search(r"<script[^>]+src=|<link ", html)
    [report_run] = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id],
                                      filter_string="tags.report = 'true'")
    names = {a.path for a in client.list_artifacts(report_run.info.run_id, "report")}
    assert "report/report.html" in names and "report/cost_vs_accuracy.png" in names


EPA_URL = "https://www.epa.gov/energy/greenhouse-gas-equivalencies-calculator"


def test_pareto_change_and_sensitivity():
    summary = pd.DataFrame([{"hardware": "cpu", "adaptation": n, "accuracy_reference": a, "cost_cores": c,
                             "latency_p99_s": l, "energy_j_per_request": e} for n, (a, c, l, e) in CONFIGS.items()])
    without, with_energy, tradeoffs = pareto_change(summary)
    assert without == {"tiny", "small", "medium", "large", "huge"}
    assert with_energy - without == {"frugal"}
    [t] = tradeoffs
    assert (t.adaptation, t.versus) == ("frugal", "small")
    assert t.energy_saved_j_per_request == pytest.approx(2.0) and t.accuracy_given_up == pytest.approx(0.01)


def test_correlations_recover_a_known_relation():
    summary = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "energy_j_per_request": [2.1, 3.9, 6.2, 7.8, 10.1, 12.0]})
    c = correlation(summary, "x")
    assert c.pearson_r > 0.99 and c.pearson_ci[0] > 0.9 and c.spearman_rho == pytest.approx(1.0)
    assert correlation(summary.head(3), "x") is None  # too few configurations


def test_overlapping_intervals_are_not_called_an_ordering():
    trials = pd.DataFrame([{"hardware": "cpu", "adaptation": a, "energy_source": "rapl", "energy_j_per_request": v}
                           for a, values in {"a": [1.0, 1.2, 1.4], "b": [1.3, 1.5, 1.7], "c": [5.0, 5.1, 5.2]}.items()
                           for v in values])
    verdicts = distinguishable(summarise(trials, ["energy_j_per_request"]), "energy_j_per_request")
    assert verdicts == [("a", "b", False), ("b", "c", True)]


def test_mixed_energy_sources_are_warned_about(tmp_path):
    cfg, _ = log_synthetic(tmp_path, energy_source=lambda name: "estimate" if name == "huge" else "rapl")
    html = (report_job(cfg) / "report.html").read_text()
    assert "energy from different meters (estimate, rapl)" in html


def trials_of(energy: dict[str, list[float]], evaluator: str = "run") -> pd.DataFrame:
    """Trials of CONFIGS with the given energy values per configuration (its own value, once, if not given)."""
    return pd.DataFrame([{"hardware": "cpu", "adaptation": name, "evaluator": evaluator, "energy_source": "rapl",
                          "accuracy_reference": acc, "cost_cores": cores, "latency_p99_s": p99,
                          "energy_j_per_request": value}
                         for name, (acc, cores, p99, e) in CONFIGS.items() for value in energy.get(name, [e])])


METRICS = ["accuracy_reference", "cost_cores", "latency_p99_s", "energy_j_per_request"]
SPREAD = {name: [e * 0.99, e, e * 1.01] for name, (_, _, _, e) in CONFIGS.items()}


def test_energy_changes_the_best_only_when_the_trials_tell_energies_apart():
    # frugal's energy (1.0) well below small's (3.0), the one configuration that beats it otherwise: yes
    verdict, sentence = answer(summarise(trials_of(SPREAD), METRICS))
    assert verdict == "yes" and "frugal become Pareto-optimal only when energy counts" in sentence
    # the same means, but frugal's interval reaches above small's lower end: the trials cannot tell
    overlapping = {**SPREAD, "frugal": [-1.0, 1.0, 3.0]}
    [entry] = energy_entries(summarise(trials_of(overlapping), METRICS))
    assert (entry.adaptation, entry.dominated_by, entry.distinguishable) == ("frugal", ("small",), False)
    assert entry.energy_ci95_high > entry.dominators_ci95_low
    verdict, sentence = answer(summarise(trials_of(overlapping), METRICS))
    assert verdict == "cannot tell" and sentence.startswith("the trials cannot tell") and "frugal" in sentence
    # one trial per configuration: no interval, so no "yes" from means alone
    verdict, sentence = answer(summarise(trials_of({}), METRICS))
    assert verdict == "cannot tell" and "one trial per configuration" in sentence
    # composed figures repeated three times are one prediction, not three trials
    verdict, _ = answer(summarise(trials_of({n: [e] * 3 for n, (_, _, _, e) in CONFIGS.items()}, "profile"), METRICS))
    assert verdict == "cannot tell"
    # nothing enters: no
    no_frugal = trials_of(SPREAD)[lambda t: t["adaptation"] != "frugal"]
    assert answer(summarise(no_frugal, METRICS))[0] == "no"


def log_study(tmp_path, study: str, trials: list[dict]):
    """A study's parent run and one trial run per entry of `trials` (tags, params and metrics as search logs them)."""
    cfg, client, experiment = synthetic_store(tmp_path, f"report.study={study}")
    with tracked_run(client, experiment, f"study-{study}", tags={"study_name": study}) as parent:
        for number, trial in enumerate(trials):
            with tracked_run(client, experiment, f"trial-{number}", parent_run_id=parent,
                             tags={"study_name": study, **trial["tags"]}) as run:
                log(client, run, params={"trial": number, **trial["params"]}, metrics=trial["metrics"])
    return cfg


def stage_params(detector_replicas: int) -> dict:
    return {"detector.variant": "yolov5n", "detector.batch_size": 1, "detector.threads": 1,
            "detector.replicas": detector_replicas, "classifier.variant": "resnet18", "classifier.batch_size": 4,
            "classifier.threads": 1, "classifier.replicas": 1}


def test_a_report_on_a_study_says_which_figures_are_composed_estimated_or_unlabelled(tmp_path):
    import io

    from rich.console import Console

    composed = {"evaluator": "profile", "energy_source": "estimate,rapl"}  # each stage profile's meter
    trials = [{"tags": tags, "params": stage_params(replicas),
               "metrics": {**dict(zip(METRICS, values)), "cost_usd_per_1k": values[1] * 0.01, "sla_attainment": 1.0}}
              for tags, replicas, values in [(composed, 1, (0.3, 2, 0.5, 2.0)), (composed, 2, (0.3, 3, 0.4, 1.0)),
                                             ({}, 4, (0.3, 5, 0.3, 0.5))]]  # the last: a store older than the tags
    console = io.StringIO()
    folder = report_job(log_study(tmp_path, "video-cpu", trials), Console(file=console, width=400))
    out, page = console.getvalue(), (folder / "report.html").read_text()
    for text in (out, page):
        assert "2 of 3 trials are composed, not measured" in text
        assert "1 of 3 trials carry no evaluator tag" in text and "is unknown" in text
        assert "energy from energy_source=estimate is a model, not a measurement" in text
    # said again at the top of every section showing such figures (6), and on every figure (its PNG travels alone)
    note = "composed from profiles, not measured; energy estimated from CPU time, not measured"
    figures = page.count('class="plotly-graph-div"')
    assert page.count(f'<p class="warn">⚠ {note}') == 6 and figures >= 7 and page.count(note) == 6 + figures
    summary = pd.read_csv(folder / "summary.csv")
    # trials differing only in replicas are three configurations, not three repetitions of one
    assert len(summary) == 3 and set(summary["n"]) == {1}
    assert set(summary["evaluator"]) == {"profile", "unknown"}
    assert summary["energy_j_per_request_ci95_low"].isna().all()  # a prediction has no interval


def test_runs_of_the_offline_throughput_mode_are_labelled(make_cfg, client, tmp_path):
    from sustainable_ipa.experiment import run_job

    cfg = make_cfg("trial.load=offline", "trial.requests=2", f"report.out_dir={tmp_path}/reports")
    tags = client.get_run(run_job(cfg).run_id).data.tags
    assert tags["load"] == "offline" and "queue position" in tags["load_note"]
    page = (report_job(cfg) / "report.html").read_text()
    assert "1 of 1 trials ran with trial.load=offline" in page and "queue position" in page


def test_the_static_figures_name_points_without_names_colliding():
    import matplotlib.pyplot as plt

    from sustainable_ipa.report.plots import name_points, place_labels

    # a crowded panel: 40 configurations, some on the same spot, with names as long as a study's
    crowded = pd.DataFrame({"adaptation": [f"yolov5n b{i} t1 r1 + resnet18 b4 t1 r1" for i in range(40)],
                            "x": [i % 7 / 7 for i in range(40)], "y": [i % 5 / 5 for i in range(40)]})
    sparse = pd.DataFrame({"adaptation": ["a", "b", "c"], "x": [0.0, 0.5, 1.0], "y": [0.0, 1.0, 0.0]})
    for frame, everyone in ((crowded, False), (sparse, True)):
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(frame["x"], frame["y"], label="configurations")
        legend = ax.legend(loc="upper left")
        name_points(ax, frame, "x", "y")
        fig.tight_layout()
        counts = place_labels(fig)
        renderer = fig.canvas.get_renderer()
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert counts["placed"] == len(boxes) and counts["placed"] + counts["left_out"] == len(frame)
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
        assert not any(b.overlaps(legend.get_window_extent(renderer)) for b in boxes)
        frame_box = ax.get_window_extent(renderer)
        assert all(frame_box.x0 <= b.x0 and b.x1 <= frame_box.x1 for b in boxes)  # inside the panel
        assert (counts["left_out"] == 0) == everyone  # the sparse panel names all, the crowded one cannot
        plt.close(fig)


ENERGY_COLUMN = "energy_j_per_request"


def test_every_interactive_figure_names_each_configuration_on_hover():
    from sustainable_ipa.report import interactive

    summary = summarise(trials_of(SPREAD).assign(cost_usd_per_1k=lambda t: t["cost_cores"] * 0.01,
                                                 numerics="fp32/torch + fp32/torch"),
                        METRICS + ["cost_usd_per_1k"])
    figures = [*interactive.cost_vs_accuracy(summary, "a note"),
               interactive.energy_versus(summary, "cost_usd_per_1k", {"cpu": correlation(summary, "cost_usd_per_1k")}),
               interactive.pareto_plot(summary, {"cpu": {"small"}}, {"cpu": {"small", "frugal"}})]
    for fig in figures:
        named = {row[0] for trace in fig.data for row in (trace.customdata or [])}
        assert named == set(CONFIGS)
        assert all("%{customdata[0]}" in trace.hovertemplate for trace in fig.data)
    assert "a note" in figures[0].layout.title.text  # a figure saved from the page keeps its warning
    # few points: each named on the chart itself, not only on hover; axes in words with their units
    for fig in figures[:2] + figures[3:]:
        assert {name for trace in fig.data for name in (trace.text or ())} == set(CONFIGS)
    assert figures[3].layout.xaxis.title.text == "cost (USD per 1k requests)"
    assert figures[3].layout.yaxis.title.text == "energy per request (J, idle-subtracted)"
    assert "cost_usd_per_1k" not in figures[3].layout.title.text
    crowded = pd.DataFrame({"hardware": "cpu", "adaptation": [f"c{i}" for i in range(13)], "accuracy_reference": 0.5,
                            "cost_usd_per_1k": range(13), ENERGY_COLUMN: range(13), "latency_p99_s": 1.0})
    assert not any(trace.text for trace in interactive.cost_vs_accuracy(crowded)[0].data)  # would overlap


def pipeline_trials(energy: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """Trials of several pipelines: (pipeline, what a request brings its first stage) → energy per request."""
    return pd.DataFrame([{"hardware": "cpu on m1", "pipeline": pipeline, "pipeline_input": kind,
                          "adaptation": f"{pipeline}-{i % 2}", "energy_j_per_request": e}
                         for (pipeline, kind), values in energy.items() for i, e in enumerate(values)])


@pytest.mark.parametrize("text,video,verdict", [
    ([1.0, 1.1, 0.9, 1.2], [5.0, 5.5, 4.8, 5.2], "holds"),
    ([6.0, 6.1, 5.9, 6.2], [1.0, 1.1, 0.9, 1.2], "does not hold"),
    ([1.0, 5.0, 1.2, 5.1], [1.1, 5.2, 0.9, 5.0], "cannot tell"),
])
def test_energy_by_pipeline_type_tells_the_hypothesis_only_by_disjoint_intervals(text, video, verdict):
    from sustainable_ipa.report.analysis import energy_by, type_answer

    by_type = energy_by(pipeline_trials({("nlp", "text"): text, ("video", "frame"): video}), "type")
    assert list(by_type["type"]) == ["text", "video"] and list(by_type["trials"]) == [4, 4]
    low, high = by_type["energy_j_per_request_ci95_low"], by_type["energy_j_per_request_ci95_high"]
    assert (low >= 0).all() and (low <= by_type["energy_j_per_request"]).all()
    assert (by_type["energy_j_per_request"] <= high).all()
    assert f"the hypothesis {verdict}" in type_answer(by_type)


def test_a_report_over_several_pipelines_answers_per_pipeline_and_by_type(tmp_path):
    cfg, client, experiment = synthetic_store(tmp_path)
    for pipeline, kind, energy in (("video", "frame", 6.0), ("sum-qa", "text", 1.5)):
        for name, (acc, cores, p99, _) in list(CONFIGS.items())[:4]:
            tags = {"adaptation": f"{pipeline}-{name}", "pipeline": pipeline, "pipeline_input": kind,
                    "energy_source": "rapl", "weights_kind": "random"}
            with tracked_run(client, experiment, name, tags=tags) as job:
                for noise in (-0.01, 0.0, 0.01):
                    with tracked_run(client, experiment, f"{name}-rep", parent_run_id=job, tags=tags) as run:
                        log(client, run, metrics={"accuracy_reference": acc, "cost_cores": cores,
                                                  "cost_usd_per_1k": cores * 0.01, "latency_p99_s": p99,
                                                  "energy_j_per_request": energy * cores * (1 + noise),
                                                  "sla_attainment": 1.0})
    folder = report_job(cfg)
    summary = pd.read_csv(folder / "summary.csv")
    assert set(summary["hardware"].str.split(" · ").str[0]) == {"video", "sum-qa"}  # each pipeline compared apart
    html = (folder / "report.html").read_text()
    assert "Energy per request by pipeline type" in html and "the hypothesis holds" in html
    types = pd.read_csv(folder / "pipeline_types.csv")
    assert list(types["type"]) == ["text", "video"] and list(types["configurations"]) == [4, 4]


def test_the_answer_names_a_missed_sla_in_the_sentence_and_says_when_there_is_nothing_to_compare():
    # frugal's p99 (0.7 s) over an SLA of 0.65 s: still the entry, but never presented as best without saying so
    trials = trials_of(SPREAD).assign(sla_s=0.65)
    verdict, sentence = answer(summarise(trials, METRICS))
    assert verdict == "yes" and "frugal (misses the SLA: p99 0.7 s against 0.65 s) become" in sentence
    within = trials_of(SPREAD).assign(sla_s=1.0)
    assert "misses the SLA" not in answer(summarise(within, METRICS))[1]
    one = trials_of(SPREAD)[lambda t: t["adaptation"] == "frugal"]
    verdict, sentence = answer(summarise(one, METRICS))
    assert verdict == "nothing to compare" and sentence.startswith("nothing to compare: one configuration (frugal)")


def test_a_correlation_over_four_configurations_says_too_few_instead_of_nan():
    summary = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "energy_j_per_request": [1.0, 3.0, 2.0, 4.0]})
    c = correlation(summary, "x")
    assert c.text() == "Pearson r=0.80 [-0.7 … 1], Spearman ρ=0.80 [too few (n = 4)]"
    assert "nan" not in c.text()


def test_a_pipeline_type_with_one_trial_says_too_few_instead_of_nan():
    from sustainable_ipa.report.analysis import energy_by, type_answer

    answer = type_answer(energy_by(pipeline_trials({("nlp", "text"): [1.0], ("video", "frame"): [5.0, 5.5]}), "type"))
    assert "text 1 J [too few (n = 1)]" in answer and "nan" not in answer
    assert "cannot tell: too few trials for an interval" in answer


def test_the_answer_is_reached_under_each_curve_of_the_power_model_and_says_whether_it_holds_across_them():
    model = METRICS + ["energy_j_per_request_model_ccf", "energy_j_per_request_model_boavizta_linear"]
    # every curve scales frugal's energy as the central one does: the "yes" holds across the model's range
    scaled = trials_of(SPREAD).assign(energy_j_per_request_model_ccf=lambda t: 2 * t["energy_j_per_request"],
                                      energy_j_per_request_model_boavizta_linear=lambda t: t["energy_j_per_request"])
    verdict, sentence = answer(summarise(scaled, model))
    assert verdict == "yes" and "holds across the power model's range (ccf, boavizta_linear give it too)" in sentence
    # under CCF's straight line frugal costs as much as small: there energy changes nothing
    frugal = scaled["adaptation"] == "frugal"
    small_energy = scaled.loc[scaled["adaptation"] == "small", "energy_j_per_request"].mean()
    flat = scaled.assign(energy_j_per_request_model_ccf=lambda t: t["energy_j_per_request_model_ccf"].where(
        ~frugal, 5 * small_energy))
    verdict, sentence = answer(summarise(flat, model))
    assert verdict == "depends on the power model"
    assert sentence.startswith("it depends on the power model: yes: frugal") and "but no under ccf" in sentence
    # one configuration: nothing to compare, whatever the model
    assert answer(summarise(scaled[frugal], model))[0] == "nothing to compare"
