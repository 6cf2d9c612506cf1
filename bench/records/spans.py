"""When stages ran, from their records alone: the check that no latency figure was timed while other suite
work computed.

Every record the runner writes carries ``started`` and ``finished`` (UTC ISO times, ms) of the span during
which its stage held the machine lock. :func:`latency_overlaps` lists every pair of a latency record (a
single model's or a paired comparison) and any other record (training, evaluation, profile, compression,
or another latency record) whose spans overlap; spans that only touch do not overlap. A latency budget's
own-setting records measured in interleaved rounds (bench.sweep.side_by_side.lone_stages) share one span, the one stage
that timed them all under the exclusive lock: records with the same span that name each other in
``interleaved_with`` are not an overlap. Records of older code,
without a span, are returned apart and cannot be checked. :func:`stage_runs` reads from a sweep's log which
stages it ran and which it found done, so that two sweeps at once can be shown to run each stage once.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.records.schema import is_record_file, read_record


@dataclass(frozen=True)
class Span:
    path: str
    stage: str
    start: datetime
    end: datetime
    interleaved: tuple[str, ...] = ()  # the other models of an interleaved lone measurement

    @property
    def latency(self) -> bool:
        return self.stage.startswith("latency")

    @property
    def model(self) -> str:
        return Path(self.path).parent.name.rsplit("-", 1)[0]

    def overlaps(self, other: Span) -> bool:
        together = (self.start, self.end) == (other.start, other.end) and self.stage == other.stage \
            and other.model in self.interleaved and self.model in other.interleaved
        return self.start < other.end and other.start < self.end and not together


def stage_spans(results_dirs: Iterable[Path | str]) -> tuple[list[Span], list[str]]:
    """(every record's span under the folders' ``runs/``, the records without one)."""
    spans, without = [], []
    for folder in results_dirs:
        for path in sorted((Path(folder) / "runs").glob("*/*.json")):
            if not is_record_file(path):
                continue
            rec = read_record(path)
            if rec.started and rec.finished:
                spans.append(Span(str(path), rec.stage, datetime.fromisoformat(rec.started),
                                  datetime.fromisoformat(rec.finished),
                                  tuple(rec.to_dict().get("interleaved_with") or ())))
            else:
                without.append(str(path))
    return spans, without


def latency_overlaps(spans: list[Span]) -> list[tuple[Span, Span]]:
    """Every (latency span, other span) pair that overlaps, each pair once."""
    out = []
    for i, a in enumerate(spans):
        for b in spans[i + 1 :]:
            if (a.latency or b.latency) and a.overlaps(b):
                out.append((a, b) if a.latency else (b, a))
    return out


_STAGE_LINE = re.compile(r"^  ([a-z_]+(?:-[\w.]+)*): (?:(done before), skipped|[0-9.]+ s\b)")


def stage_runs(log: str) -> Counter[tuple[str, str, str]]:
    """What a sweep's log (its stderr) says each stage did: ``(section, stage, "ran" | "skipped")`` counts,
    where a section is the line that opens a model (``transformer at 100M (mt):``) or the paired comparison."""
    out: Counter[tuple[str, str, str]] = Counter()
    section = ""
    for line in log.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            section = line.split(" (reference")[0].split(" at ")[0].rstrip(":")
            continue
        m = _STAGE_LINE.match(line)
        if m:
            out[section, m.group(1), "skipped" if m.group(2) else "ran"] += 1
    return out
