"""Stage profiles: measured per-batch latency and idle-subtracted energy of one variant × batch × threads."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from sustainable_ipa.errors import UserError

# Bumped whenever a stage's measured cost changes for the same configuration, so that older caches are refused:
# 1 → 2: a detector batch of portrait and landscape frames runs as two sub-batches instead of one square.
PROFILER_VERSION = 2


@dataclass(frozen=True)
class StageProfile:
    stage: str
    variant: str
    batch_size: int
    threads: int
    latency_p50_s: float  # one batch, pre- and post-processing included
    latency_p99_s: float
    throughput_items_s: float  # items (frames or crops) per second of one replica
    energy_j_per_item: float  # idle-subtracted
    energy_source: str

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.stage, self.variant, self.batch_size, self.threads)


class ProfileTable:
    def __init__(self, rows: list[StageProfile], hardware: str, items_per_request: dict[str, tuple[int, ...]]):
        self.rows = {r.key: r for r in rows}
        self.hardware = hardware
        # Items each request brings to a stage, in request order (requests cycle over the dataset's frames):
        # detector (1,), classifier the crops of each frame. The order decides how batches fill.
        self.items_per_request = {stage: tuple(int(n) for n in cycle) for stage, cycle in items_per_request.items()}

    def mean_items(self, stage: str) -> float:
        cycle = self.items_per_request[stage]
        return sum(cycle) / len(cycle)

    def get(self, stage: str, variant: str, batch_size: int, threads: int) -> StageProfile:
        try:
            return self.rows[(stage, variant, batch_size, threads)]
        except KeyError:
            raise UserError(f"no profile for {stage} {variant} batch {batch_size} threads {threads} on {self.hardware}",
                            "run `python src/profiling.py` with this space (or profiling.refresh=true)") from None

    def to_csv(self) -> str:
        buffer = io.StringIO()
        names = [f.name for f in fields(StageProfile)]
        writer = csv.DictWriter(buffer, fieldnames=["profiler_version", "hardware", *names, "items_per_request"])
        writer.writeheader()
        for row in self.rows.values():
            writer.writerow({"profiler_version": PROFILER_VERSION, "hardware": self.hardware, **asdict(row),
                             "items_per_request": " ".join(map(str, self.items_per_request[row.stage]))})
        return buffer.getvalue()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_csv())

    @classmethod
    def load(cls, path: Path) -> "ProfileTable":
        if not Path(path).is_file():
            raise UserError(f"no stage profiles at {path}", "run `python src/profiling.py`")
        rows, hardware, items = [], "", {}
        with open(path, newline="") as f:
            for raw in csv.DictReader(f):
                version = raw.get("profiler_version") or "1"
                if version != str(PROFILER_VERSION):
                    raise UserError(f"profile cache {path} was measured by profiler version {version}, "
                                    f"this one is {PROFILER_VERSION} and measures stages differently",
                                    "rerun `python src/profiling.py profiling.refresh=true`")
                hardware = raw["hardware"]
                try:
                    items[raw["stage"]] = tuple(int(n) for n in raw["items_per_request"].split())
                except ValueError:
                    raise UserError(f"profile cache {path} predates per-request item counts",
                                    "rerun `python src/profiling.py profiling.refresh=true`") from None
                rows.append(StageProfile(raw["stage"], raw["variant"], int(raw["batch_size"]), int(raw["threads"]),
                                         float(raw["latency_p50_s"]), float(raw["latency_p99_s"]),
                                         float(raw["throughput_items_s"]), float(raw["energy_j_per_item"]),
                                         raw["energy_source"]))
        return cls(rows, hardware, items)
