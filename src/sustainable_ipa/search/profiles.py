"""Stage profiles: measured per-batch latency and idle-subtracted energy of one variant × batch × threads."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from sustainable_ipa.errors import UserError


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
    def __init__(self, rows: list[StageProfile], hardware: str, items_per_request: dict[str, float]):
        self.rows = {r.key: r for r in rows}
        self.hardware = hardware
        self.items_per_request = items_per_request  # detector: 1 frame; classifier: crops per frame

    def get(self, stage: str, variant: str, batch_size: int, threads: int) -> StageProfile:
        try:
            return self.rows[(stage, variant, batch_size, threads)]
        except KeyError:
            raise UserError(f"no profile for {stage} {variant} batch {batch_size} threads {threads} on {self.hardware}",
                            "run `python src/profiling.py` with this space (or profiling.refresh=true)") from None

    def to_csv(self) -> str:
        buffer = io.StringIO()
        names = [f.name for f in fields(StageProfile)]
        writer = csv.DictWriter(buffer, fieldnames=["hardware", *names, "items_per_request"])
        writer.writeheader()
        for row in self.rows.values():
            writer.writerow({"hardware": self.hardware, **asdict(row),
                             "items_per_request": self.items_per_request[row.stage]})
        return buffer.getvalue()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_csv())

    @classmethod
    def load(cls, path: Path) -> "ProfileTable":
        rows, hardware, items = [], "", {}
        with open(path, newline="") as f:
            for raw in csv.DictReader(f):
                hardware = raw["hardware"]
                items[raw["stage"]] = float(raw["items_per_request"])
                rows.append(StageProfile(raw["stage"], raw["variant"], int(raw["batch_size"]), int(raw["threads"]),
                                         float(raw["latency_p50_s"]), float(raw["latency_p99_s"]),
                                         float(raw["throughput_items_s"]), float(raw["energy_j_per_item"]),
                                         raw["energy_source"]))
        return cls(rows, hardware, items)
