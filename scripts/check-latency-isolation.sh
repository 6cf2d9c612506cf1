#!/usr/bin/env bash
# The real-measurement checks of latency isolation. Run on a quiet machine (no other jobs): it measures.
#
#  1. `python -m bench latency --compare transformer,evolved_transformer,lite_transformer --budget 100M
#     --threads 1 --json`, twice in a row, for the forward and the translate workload: every ratio of the
#     second run within 5% of the first and inside the first run's 95% interval; the JSON carries `ratios` with
#     `ci95` for every model.
#  2. Two `python -m bench run --budget 100M --quick` started at once in this checkout (into a scratch results and
#     cache folder), one with --models transformer,lite_transformer, the other with the same models in the other
#     order (so that one sweep reaches a latency stage while the other trains): both succeed, every stage ran
#     exactly once (one sweep ran it, the other found it done), and no latency record's span overlaps any other
#     record's span.
#
# Prints the figures; exit status 1 when a check fails. Everything goes to a scratch folder (printed; OUT=DIR
# picks it); nothing under results/ or .cache/ is touched. The corpus comes from LITEBENCH_DATA (or the
# checkout's .cache/data) and is built there on first use.
#
#   scripts/check-latency-isolation.sh            # the checks (about 10 minutes on 2 cores)
#   scripts/check-latency-isolation.sh --reduced  # an end-to-end smoke run: forward only, 4 rounds, 1 thread,
#                                                 # 5 s quiet-wait; its figures mean nothing
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/litebench-isolation-XXXXXX")}
mkdir -p "$OUT"
MODELS=transformer,evolved_transformer,lite_transformer
WORKLOADS="forward translate"
COMPARE_ARGS=()
SWEEP_ARGS=()
if [[ "${1:-}" == "--reduced" ]]; then
    WORKLOADS="forward"
    COMPARE_ARGS=(--rounds 4 --warmup 3)
    SWEEP_ARGS=(--threads 1)
    export LITEBENCH_QUIET_WAIT=${LITEBENCH_QUIET_WAIT:-5}
fi
echo "scratch folder: $OUT"

echo "== 1. paired latency, twice in a row (1 thread, 100M)"
for w in $WORKLOADS; do
    for i in 1 2; do
        "$PY" -m bench latency --compare "$MODELS" --budget 100M --threads 1 --workload "$w" \
            ${COMPARE_ARGS[@]+"${COMPARE_ARGS[@]}"} --json > "$OUT/compare-$w-$i.json"
    done
done

echo "== 2. two quick sweeps at once"
sweep() {
    "$PY" -m bench run --budget 100M --quick --models "$2" --results "$OUT/results" --cache "$OUT/cache" \
        ${SWEEP_ARGS[@]+"${SWEEP_ARGS[@]}"} > /dev/null 2> "$OUT/sweep$1.log"
}
sweep 1 transformer,lite_transformer & p1=$!
sweep 2 lite_transformer,transformer & p2=$!
s1=0; s2=0
wait $p1 || s1=$?
wait $p2 || s2=$?

"$PY" - "$OUT" "$WORKLOADS" "$s1" "$s2" <<'EOF'
import json, sys
from collections import Counter
from pathlib import Path

from bench.records.spans import latency_overlaps, stage_runs, stage_spans

out, workloads, codes = Path(sys.argv[1]), sys.argv[2].split(), [int(sys.argv[3]), int(sys.argv[4])]
ok = True


def check(cond: bool, what: str) -> None:
    global ok
    ok &= bool(cond)
    print(f"  {'PASS' if cond else 'FAIL'}: {what}")


print("\n1. paired latency: ratio vs transformer, first run [95% interval] -> second run")
for w in workloads:
    a, b = (json.loads((out / f"compare-{w}-{i}.json").read_text()) for i in (1, 2))
    print(f"  {w} ({a['rounds']} rounds; p50 ms first run: "
          + ", ".join(f"{m} {a['p50_ms'][m]:.2f}" for m in a["models"]) + ")")
    check(set(a["ratios"]) == set(a["models"]) and all(len(r["ci95"]) == 2 for r in a["ratios"].values()),
          f"{w}: the JSON has ratios with ci95 for every model")
    for m in a["models"][1:]:
        r1, (lo, hi), r2 = a["ratios"][m]["ratio"], a["ratios"][m]["ci95"], b["ratios"][m]["ratio"]
        print(f"    {m:<22} {r1:.3f} [{lo:.3f}, {hi:.3f}] -> {r2:.3f} ({r2 / r1 - 1:+.1%})")
        check(abs(r2 / r1 - 1) <= 0.05, f"{w} {m}: second ratio within 5% of the first")
        check(lo <= r2 <= hi, f"{w} {m}: second ratio inside the first run's interval")
    for run, res in (("first", a), ("second", b)):
        if not res["machine_quiet"]:
            print(f"    note: machine not quiet before the {run} run: {res['not_quiet']}")

print("\n2. two quick sweeps at once")
check(codes == [0, 0], f"both sweeps succeeded (exit {codes}; logs in {out}/sweep1.log, sweep2.log)")
results = [d for d in (out / "results").iterdir() if (d / "runs").is_dir()] if (out / "results").is_dir() else []
spans, without = stage_spans(results)
latency = [s for s in spans if s.latency]
print(f"  {len(spans)} records with spans ({len(latency)} latency), {len(without)} without")
check(spans and not without, "every record carries its span")
overlaps = latency_overlaps(spans)
for a, b in overlaps:
    print(f"    overlap: {Path(a.path).parent.name}/{Path(a.path).name} {a.start.time()}-{a.end.time()} with "
          f"{Path(b.path).parent.name}/{Path(b.path).name} {b.start.time()}-{b.end.time()}")
check(not overlaps, "no latency span overlaps another record's span")
ran, skipped = Counter(), Counter()
for i in (1, 2):
    for (section, stage, what), n in stage_runs((out / f"sweep{i}.log").read_text()).items():
        (ran if what == "ran" else skipped)[section, stage] += n
check(sum(ran.values()) == len(spans) + len(without) and set(ran.values()) == {1},
      f"every stage ran exactly once ({sum(ran.values())} runs for {len(spans) + len(without)} records)")
check(skipped == ran, "the other sweep found each of them done")
waits = [json.loads(Path(s.path).read_text()).get("lock_wait_s") or 0 for s in spans]
print(f"  machine-lock waits: {sum(w > 0.5 for w in waits)} stages waited, longest {max(waits, default=0):.1f} s")
print("\nALL CHECKS PASSED" if ok else "\nSOME CHECKS FAILED")
sys.exit(0 if ok else 1)
EOF
