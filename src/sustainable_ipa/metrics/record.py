"""The run record of one trial: every metric assembled in one place from the trial's raw result."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence

import numpy as np

from sustainable_ipa.metrics.cost import cost_usd_per_1k
from sustainable_ipa.metrics.latency import latency_percentiles_s, sla_attainment, throughput_rps
from sustainable_ipa.metrics.stats import metric_interval


# What the record reads of a trial, as protocols: `pipeline.runner.TrialResult` is a TrialTimeline, and metrics,
# which the pipeline sits above, imports nothing of it.
class RequestTimeline(Protocol):
    @property
    def request_id(self) -> int: ...
    @property
    def item(self) -> object: ...
    @property
    def arrival_s(self) -> float: ...
    @property
    def finish_s(self) -> float: ...
    @property
    def latency_s(self) -> float: ...
    @property
    def outputs(self) -> dict[str, list]: ...  # per stage, its items' outputs
    @property
    def stage_end_s(self) -> dict[str, float]: ...  # per stage, when its last item of the request was back


class BatchTime(Protocol):
    @property
    def stage(self) -> str: ...
    @property
    def duration_s(self) -> float: ...


class TrialTimeline(Protocol):
    @property
    def requests(self) -> Sequence[RequestTimeline]: ...
    @property
    def batches(self) -> Sequence[BatchTime]: ...
    @property
    def start_s(self) -> float: ...
    @property
    def stages(self) -> list[str]: ...  # the pipeline's stages in order; may be empty

    def stage_cpu_s(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class TrialContext:
    """What the metrics need besides the trial's timestamps."""

    sla_s: float
    cost_cores: int
    price_usd_per_core_hour: float
    accuracy_reference: float
    # measured once on each stage's reference inputs (pretrained weights only): `<stage>_<metric>` fractions and
    # `accuracy_measured`, their product (`experiment.measured_accuracies`)
    accuracy_measured: dict[str, float] = field(default_factory=dict)


def trial_metrics(result: TrialTimeline, ctx: TrialContext) -> dict[str, float]:
    requests = result.requests
    arrivals = np.array([r.arrival_s for r in requests])
    finishes = np.array([r.finish_s for r in requests])
    latencies = finishes - arrivals
    span_s = float(finishes.max() - arrivals.min())
    metrics = {
        "accuracy_reference": ctx.accuracy_reference,
        **latency_percentiles_s(latencies),
        "throughput_rps": throughput_rps(arrivals, finishes),
        "sla_attainment": sla_attainment(latencies, ctx.sla_s),
        "cost_cores": float(ctx.cost_cores),
        "cost_usd_per_1k": cost_usd_per_1k(ctx.price_usd_per_core_hour, ctx.cost_cores, span_s, len(requests)),
        "requests_served": float(len(requests)),
        "duration_s": span_s,
    }
    stages = result.stages or list(dict.fromkeys(b.stage for b in result.batches))
    for stage in stages[1:]:  # the first stage gets one item per request
        metrics[f"{stage}_items_per_request"] = float(np.mean([len(r.outputs.get(stage, ())) for r in requests]))
    for stage, latencies_s in stage_latencies_s(requests, stages).items():
        metrics.update({f"{stage}_{k}": v for k, v in latency_percentiles_s(latencies_s).items()})
    for stage in stages:
        durations_s = [b.duration_s for b in result.batches if b.stage == stage]
        if durations_s:
            metrics[f"{stage}_batch_s"] = float(np.mean(durations_s))
    for stage, cpu_s in result.stage_cpu_s().items():
        metrics[f"cpu_{stage}_s"] = cpu_s  # measured by the OS in the stage's worker processes
    metrics.update(ctx.accuracy_measured)
    return metrics


def stage_latencies_s(requests: list, stages: list[str]) -> dict[str, np.ndarray]:
    """Per stage, each request's time in it: from when the stage before was done with the request (its arrival, for
    the first stage) until this stage was done with its last item (queueing, batching and compute). Requests that
    brought a stage no item are not counted for it."""
    out: dict[str, np.ndarray] = {}
    for k, stage in enumerate(stages):
        spans = [r.stage_end_s[stage] - (r.stage_end_s[stages[k - 1]] if k else r.arrival_s)
                 for r in requests if stage in r.stage_end_s and (k == 0 or stages[k - 1] in r.stage_end_s)]
        if spans:
            out[stage] = np.array(spans)
    return out


def outputs_json(result: TrialTimeline) -> list[dict]:
    """What every stage made of each input, once per input (requests cycle over the dataset's items)."""
    seen: set[int] = set()
    out: list[dict] = []
    for r in result.requests:
        if id(r.item) not in seen:
            seen.add(id(r.item))
            out.append({"item": item_name(r.item),
                        "outputs": {stage: [jsonable(o) for o in outputs] for stage, outputs in r.outputs.items()}})
    return out


def item_name(item) -> str:
    return str(getattr(item, "name", ""))


def jsonable(value):
    """A stage's output as JSON: arrays as nested lists, numpy numbers as Python's."""
    if isinstance(value, np.ndarray):
        return np.round(value, 4).tolist() if value.dtype.kind == "f" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return jsonable(asdict(value))
    return value


def requests_csv(result: TrialTimeline) -> str:
    """Per-request timeline, seconds from the trial's start: when each stage was done with the request's items, and
    how many items each stage after the first got."""
    stages = result.stages or list(dict.fromkeys(b.stage for b in result.batches))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "item", "arrival_s", *(f"{s}_done_s" for s in stages), "finish_s", "latency_s",
                     *(f"{s}_items" for s in stages[1:])])
    for r in result.requests:
        done = [f"{r.stage_end_s.get(s, float('nan')) - result.start_s:.6f}" for s in stages]
        writer.writerow([r.request_id, item_name(r.item), f"{r.arrival_s - result.start_s:.6f}", *done,
                         f"{r.finish_s - result.start_s:.6f}", f"{r.latency_s:.6f}",
                         *(len(r.outputs.get(s, ())) for s in stages[1:])])
    return buffer.getvalue()


def aggregate(per_repetition: list[dict[str, float]]) -> dict[str, float]:
    """Mean and 95 % CI over repetitions: `<metric>_mean`, and `<metric>_ci95_low`, `<metric>_ci95_high` within the
    values the metric can take, where there are enough repetitions for one (`metrics/stats.py`); energy metrics also
    get their coefficient of variation, `<metric>_cv` (sample std ÷ mean)."""
    from sustainable_ipa.metrics.energy import ENERGY_METRICS_FOR_CV

    out: dict[str, float] = {}
    for name in sorted({k for m in per_repetition for k in m}):
        values = [m[name] for m in per_repetition if name in m]
        interval = metric_interval(name, values)
        out[f"{name}_mean"] = mean = interval.mean
        if interval.known:
            out[f"{name}_ci95_low"], out[f"{name}_ci95_high"] = interval.low, interval.high
        if name in ENERGY_METRICS_FOR_CV and len(values) > 1 and mean != 0:
            out[f"{name}_cv"] = float(np.std(values, ddof=1) / abs(mean))
    return out
