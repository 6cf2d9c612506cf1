#!/usr/bin/env bash
# Carry unfinished training runs from one machine to the next through the repository.
#
# A training run resumes from its checkpoint in .cache/runs/ (git-ignored). A run longer than the time one
# machine is held (a 16x schedule takes hours) would start again from update 0 on a fresh clone. `save` copies the
# checkpoint, log and run.json of every unfinished run into parked/, to be committed; `restore` puts them back on a
# fresh clone, where the same `bench run` command then resumes them exactly (the checkpoint holds weights,
# optimizer, data position and RNG; a checkpoint of another run is refused); `drop` deletes parked runs that have
# finished. A run is finished when its folder holds train.json (the trainer writes it at the end of the schedule
# only) or its train record is under results/ (results/<folder>/runs/, or results/<budget>/ablations/runs/ for
# the ablations' <budget>-ablations cache folders).
#
#   scripts/park-runs.sh save | restore | drop | list      (from the repository root)
set -euo pipefail

CACHE=.cache/runs
PARK=parked

fail() {
  echo "park-runs: $1" >&2
  exit 2
}
[ $# -eq 1 ] || fail "usage: scripts/park-runs.sh save|restore|drop|list"
case "$1" in save | restore | drop | list) ;; *) fail "usage: scripts/park-runs.sh save|restore|drop|list" ;; esac
[ -d results ] || fail "no results/ here: run it from the repository root (where .cache/runs/ and parked/ live)"

# A run folder is <cache>/<results folder>/<model>-<hash>/train-s<N>.
record_of() {  # $1: a path relative to the cache or park root
  local sweep row seed
  sweep=${1%%/*}
  row=${1#*/}
  row=${row%%/*}
  seed=${1##*/}
  case "$sweep" in
    *-ablations) echo "results/${sweep%-ablations}/ablations/runs/$row/$seed.json" ;;
    *) echo "results/$sweep/runs/$row/$seed.json" ;;
  esac
}

finished() {  # $1: the folder, $2: the run's relative path
  [ -f "$1/train.json" ] || [ -f "$(record_of "$2")" ]
}

last_step() {  # the last update a run folder's log reached (0 without a log)
  local step=""
  if [ -f "$1/train.jsonl" ]; then
    step=$(grep -o '"step": [0-9]*' "$1/train.jsonl" | tail -1 | grep -o '[0-9]*$' || true)
  fi
  echo "${step:-0}"
}

RUNS=()
collect() {  # the train-s<N> folders under $1 holding a checkpoint, into RUNS (a failing find stops the script)
  RUNS=()
  [ -d "$1" ] || return 0
  local found
  found=$(cd "$1" && find . -mindepth 4 -maxdepth 4 -path '*/train-s*/checkpoint.pt' -printf '%h\n' | sed 's|^\./||' | sort)
  [ -z "$found" ] || mapfile -t RUNS <<<"$found"
}

copy_run() {  # $1 from, $2 to: log and run.json, then the checkpoint, each under a temporary name first
  mkdir -p "$2"
  rm -f "$2/train.jsonl"  # a log the source lacks must not stay beside its checkpoint
  for f in run.json train.jsonl; do
    if [ -f "$1/$f" ]; then cp "$1/$f" "$2/$f.tmp" && mv "$2/$f.tmp" "$2/$f"; fi
  done
  cp "$1/checkpoint.pt" "$2/checkpoint.pt.tmp" && mv "$2/checkpoint.pt.tmp" "$2/checkpoint.pt"
}

n=0
case "$1" in
  save)
    collect "$CACHE"
    for run in "${RUNS[@]}"; do
      if finished "$CACHE/$run" "$run"; then continue; fi  # its record is the result
      here=$(last_step "$CACHE/$run")
      if [ -f "$PARK/$run/checkpoint.pt" ] && [ "$(last_step "$PARK/$run")" -gt "$here" ]; then
        echo "kept $PARK/$run: it is further along (update $(last_step "$PARK/$run") > $here; restore it first)"
        continue
      fi
      copy_run "$CACHE/$run" "$PARK/$run"
      echo "parked $run (log to update $here)"
      n=$((n + 1))
    done
    echo "$n unfinished run(s) parked in $PARK/ (commit it; scripts/park-runs.sh restore on the next machine)"
    ;;
  restore)
    collect "$PARK"
    for run in "${RUNS[@]}"; do
      if finished "$PARK/$run" "$run"; then
        echo "skipped $run: it has finished (scripts/park-runs.sh drop removes it)"
      elif [ -f "$CACHE/$run/checkpoint.pt" ]; then
        echo "skipped $run: $CACHE/$run already holds a checkpoint"
      else
        copy_run "$PARK/$run" "$CACHE/$run"
        echo "restored $run (log to update $(last_step "$PARK/$run"); the checkpoint is at most checkpoint_every updates behind)"
        n=$((n + 1))
      fi
    done
    echo "$n parked run(s) restored into $CACHE/ (the same bench command resumes each)"
    ;;
  drop)
    collect "$PARK"
    for run in "${RUNS[@]}"; do
      if finished "$PARK/$run" "$run" || [ -f "$CACHE/$run/train.json" ]; then
        rm -r "${PARK:?}/$run"
        echo "dropped $run (it has finished)"
        n=$((n + 1))
      fi
    done
    if [ -d "$PARK" ]; then find "$PARK" -mindepth 1 -type d -empty -delete; rmdir "$PARK" 2>/dev/null || true; fi
    echo "$n parked run(s) dropped"
    ;;
  list)
    collect "$PARK"
    for run in "${RUNS[@]}"; do
      echo "$run (log to update $(last_step "$PARK/$run"))"
    done
    echo "${#RUNS[@]} run(s) parked"
    ;;
esac
