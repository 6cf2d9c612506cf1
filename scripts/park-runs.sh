#!/usr/bin/env bash
# Carry unfinished training runs from one machine to the next through the repository.
#
# A training run resumes from its checkpoint in .cache/runs/ (git-ignored). A run longer than the time one
# machine is held (a 16x schedule takes hours) would start again from update 0 on a fresh clone. `save` copies the
# checkpoint, log and run.json of every unfinished run (no train record under results/ yet) into parked/, to be
# committed; `restore` puts them back on a fresh clone, where the same `bench run` command then resumes them
# exactly (the checkpoint holds weights, optimizer, data position and RNG; a checkpoint of another run is refused);
# `drop` deletes parked runs whose train record has landed.
#
#   scripts/park-runs.sh save | restore | drop | list      (from the repository root, or any folder holding
#                                                            .cache/runs/, results/ and parked/)
set -euo pipefail

CACHE=.cache/runs
PARK=parked

usage() {
  echo "usage: scripts/park-runs.sh save|restore|drop|list" >&2
  exit 2
}

# A run folder is <cache>/<results folder>/<model>-<hash>/train-s<N>; its record is
# results/<results folder>/runs/<model>-<hash>/train-s<N>.json.
record_of() {  # $1: a path relative to the cache or park root
  local sweep row seed
  sweep=${1%%/*}
  row=${1#*/}; row=${row%%/*}
  seed=${1##*/}
  echo "results/$sweep/runs/$row/$seed.json"
}

runs_under() {  # relative paths of the train-s<N> folders under $1 holding a checkpoint
  [ -d "$1" ] || return 0
  (cd "$1" && find . -mindepth 4 -maxdepth 4 -path '*/train-s*/checkpoint.pt' -printf '%h\n' | sed 's|^\./||' | sort)
}

copy_run() {  # $1 from, $2 to: checkpoint, log and run.json, the checkpoint written last under a temporary name
  mkdir -p "$2"
  for f in run.json train.jsonl; do
    if [ -f "$1/$f" ]; then cp "$1/$f" "$2/$f.tmp" && mv "$2/$f.tmp" "$2/$f"; fi
  done
  cp "$1/checkpoint.pt" "$2/checkpoint.pt.tmp" && mv "$2/checkpoint.pt.tmp" "$2/checkpoint.pt"
}

[ $# -eq 1 ] || usage
case "$1" in
  save)
    n=0
    while read -r run; do
      [ -n "$run" ] || continue
      if [ -f "$(record_of "$run")" ]; then continue; fi  # finished: its record is the result
      copy_run "$CACHE/$run" "$PARK/$run"
      echo "parked $run"
      n=$((n + 1))
    done < <(runs_under "$CACHE")
    echo "$n unfinished run(s) parked in $PARK/ (commit it; scripts/park-runs.sh restore on the next machine)"
    ;;
  restore)
    n=0
    while read -r run; do
      [ -n "$run" ] || continue
      if [ -f "$(record_of "$run")" ]; then
        echo "skipped $run: its train record has landed (scripts/park-runs.sh drop removes it)"
      elif [ -f "$CACHE/$run/checkpoint.pt" ]; then
        echo "skipped $run: $CACHE/$run already holds a checkpoint"
      else
        copy_run "$PARK/$run" "$CACHE/$run"
        echo "restored $run"
        n=$((n + 1))
      fi
    done < <(runs_under "$PARK")
    echo "$n parked run(s) restored into $CACHE/ (the same bench command resumes each)"
    ;;
  drop)
    while read -r run; do
      [ -n "$run" ] || continue
      if [ -f "$(record_of "$run")" ]; then rm -r "${PARK:?}/$run" && echo "dropped $run (its record has landed)"; fi
    done < <(runs_under "$PARK")
    [ -d "$PARK" ] && find "$PARK" -mindepth 1 -type d -empty -delete
    [ -d "$PARK" ] && rmdir "$PARK" 2>/dev/null || true
    ;;
  list)
    while read -r run; do
      [ -n "$run" ] || continue
      step=$(grep -o '"step": [0-9]*' "$PARK/$run/train.jsonl" 2>/dev/null | tail -1 | grep -o '[0-9]*$' || true)
      echo "$run (log to update ${step:-?})"
    done < <(runs_under "$PARK")
    ;;
  *) usage ;;
esac
