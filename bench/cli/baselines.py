"""``baseline``: the floor of a task at a budget, as a record beside its runs (``<results>/baselines/``).

Summarization: lead-k and lead-median (``lead.json``); translation: copy the source (``copy.json``); language
modelling: the unigram plateau the train records carry (``unigram.json``). ``python -m bench report`` reads them.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from bench.cli.output import print_json
from bench.errors import BenchError
from bench.infra.atomic import write_json
from bench.records.provenance import environment, utc_now
from bench.report import has_records
from bench.train.tasks import DEFAULT_CORPUS

RECORD = {"sum": "lead", "mt": "copy", "lm": "unigram"}


def _records(results_dir: Path) -> list[dict[str, Any]]:
    """The current configurations' records of a results folder (none when it has none)."""
    # pandas: loaded when the command runs (the command line starts light)
    from bench.report.leaderboard import current_records

    if not has_records(results_dir):
        return []
    return current_records(results_dir).to_dict("records")


def _command(args: argparse.Namespace) -> str:
    words = ["python", "-m", "bench", "baseline", "--budget", args.budget, "--task", args.task]
    words += ["--corpus", args.corpus] if args.corpus else []
    words += ["--results", args.results] if args.results else []
    return " ".join(shlex.quote(str(w)) for w in words)


def baseline_record(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """(where the record goes, the record): checked and computed, nothing written."""
    from bench.budget.spec import load_budget  # yaml, the model registry: loaded when the command runs
    from bench.evaluation import baselines  # sentencepiece: loaded when the command runs

    if args.task not in RECORD:
        raise BenchError(f"baseline: unknown task {args.task!r}; valid: {', '.join(RECORD)}")
    budget = load_budget(args.budget, task=args.task)
    results_dir = (Path(args.results) if args.results else Path("results")) / budget.results_name()
    records = _records(results_dir)
    if args.task == "lm":
        if args.corpus:
            raise BenchError("baseline --task lm takes no --corpus: the unigram plateau is read from the train "
                             f"records under {results_dir / 'runs'}")
        record = baselines.unigram_plateau([r for r in records if r.get("stage") == "train"])
    else:
        name = args.corpus or DEFAULT_CORPUS[args.task]
        folder = baselines.corpus_folder(name)
        used = sorted({str(r["corpus"]) for r in records if r.get("stage") == "eval" and r.get("corpus")})
        if used and Path(name).name not in used:
            print(f"note: the runs under {results_dir} were evaluated on {', '.join(used)}, not {name}",
                  file=sys.stderr)
        record = baselines.lead_baseline(folder) if args.task == "sum" else baselines.copy_source_bleu(folder)
        record["corpus_dir"] = str(folder)
    record["budget"] = budget.name
    return results_dir / "baselines" / f"{RECORD[args.task]}.json", record


def cmd_baseline(args: argparse.Namespace) -> int:
    path, record = baseline_record(args)
    record.update({"command": _command(args), "env": environment(), "created": utc_now()})
    write_json(path, record)
    if args.json:
        print_json(record)
        return 0
    for line in summary_lines(record):
        print(line)
    print(f"wrote {path}")
    return 0


def summary_lines(record: dict[str, Any]) -> list[str]:
    """One line per floor: what it scores on test (and test-clean)."""
    if record["kind"] == "lead":
        out = []
        for row in record["baselines"]:
            clean = row.get("test_clean", {}).get("rougeL")
            out.append(f"{row['name']} (k={row['k']}): ROUGE-1/2/L {row['test']['rouge1']:.2f} / "
                       f"{row['test']['rouge2']:.2f} / {row['test']['rougeL']:.2f} on test (n={row['test']['n']})"
                       + (f", ROUGE-L {clean:.2f} on test-clean" if clean is not None else ""))
        return out
    if record["kind"] == "copy-source":
        clean = record.get("test_clean", {}).get("bleu")
        return [f"copy the source: BLEU {record['test']['bleu']:.2f}, chrF {record['test']['chrf']:.1f} on test "
                f"(n={record['test']['n']})" + (f", BLEU {clean:.2f} on test-clean" if clean is not None else "")]
    return [f"unigram plateau: {record['unigram_entropy']:.3f} nats per token (perplexity {record['ppl']:.1f})"]
