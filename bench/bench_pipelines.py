"""Each pipeline's stage variants at batch 1 on one thread, and the end-to-end SLA IPA's rule gives them here.

    python bench/bench_pipelines.py [--pipelines video audio-qa audio-sent sum-qa nlp] [--items N]

IPA (its optimizer/models.py, `sla`) sets a stage's SLA to 5 × the mean over its variants of (batch-1 latency at the
least CPU × sla_factor), sla_factor 5 for every shipped pipeline, and a pipeline's SLA to the sum over its stages.
This bench measures those batch-1 latencies here: every variant of every stage built as profiled (random weights,
torch fp32, one thread), run on each of the stage's embedded inputs in turn (the items the dataset's references hand
it), median of the per-item times after one warm-up item. Random weights generate reference-length outputs, so the
generative stages' times are those of real-length transcripts, translations and summaries. The figures are this
machine's (its CPU is printed); conf/pipeline/<name>.yaml's sla_s for the four non-video pipelines come from a run of
this bench (bench/RESULTS.md), video keeps IPA's published 6.89 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.data import load_dataset  # noqa: E402
from sustainable_ipa.families import stage_families  # noqa: E402
from sustainable_ipa.fingerprint import this_machine  # noqa: E402
from sustainable_ipa.search.profiling_job import build_stage_model  # noqa: E402
from sustainable_ipa.search.workload import pipeline_workload  # noqa: E402

IPA_SLA_FACTOR = 5  # IPA's data/configs/final/*.yaml
IPA_STAGE_FACTOR = 5  # the ×5 in its optimizer/models.py `sla`


def batch1_s(model, items: list) -> float:
    """Median seconds of one item at a time, after a warm-up item."""
    model(items[:1])
    times = []
    for item in items:
        began = time.perf_counter()
        model([item])
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def pipeline_sla(name: str, items: int) -> float:
    cfg = compose([f"pipeline={name}", "weights=random"])
    workload = pipeline_workload(stage_families(cfg.pipeline), load_dataset(cfg.dataset))
    build = build_stage_model(cfg, workload)
    total_s = 0.0
    for stage in cfg.pipeline.stages:
        inputs = workload.inputs[stage][:items]
        latencies = {}
        for variant in cfg.pipeline.variants[stage]:
            model = build(stage, variant)
            latencies[variant] = batch1_s(model, inputs)
            print(f"  {name:10} {stage:13} {variant:26} batch 1: {latencies[variant] * 1e3:8.1f} ms "
                  f"(median of {len(inputs)} items)", flush=True)
            del model
        stage_sla_s = IPA_STAGE_FACTOR * statistics.mean(latencies.values()) * IPA_SLA_FACTOR
        total_s += stage_sla_s
        print(f"  {name:10} {stage:13} stage SLA by IPA's rule: {stage_sla_s:.2f} s", flush=True)
    print(f"{name}: end-to-end SLA by IPA's rule on this machine: {total_s:.2f} s "
          f"(configured: {cfg.pipeline.sla_s} s)", flush=True)
    return total_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", nargs="+", default=["video", "audio-qa", "audio-sent", "sum-qa", "nlp"])
    parser.add_argument("--items", type=int, default=8, help="embedded inputs timed per stage")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"CPU: {this_machine().key}; torch {torch.__version__}; one thread, random weights, fp32 on torch")
    slas = {name: pipeline_sla(name, args.items) for name in args.pipelines}
    print("\n| pipeline | SLA by IPA's rule here (s) |\n| --- | --- |")
    for name, sla_s in slas.items():
        print(f"| {name} | {sla_s:.2f} |")


if __name__ == "__main__":
    main()
