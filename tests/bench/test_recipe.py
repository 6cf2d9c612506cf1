"""One recipe per budget: shared knobs, post-norm variant rows, the annealing schedule, the seeded validation
subset, the plateau (unigram entropy), and the equal-budget peak-rate search."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.budget.solve import solve_model
from bench.budget.spec import load_budget
from bench.errors import BenchError
from bench.sweep.runner import Sweep, SweepOptions
from bench.train.batching import MTData
from bench.train.schedules import get_schedule
from bench.train.trainer import Trainer, learning_rate, load_task_data, subset, unigram_entropy
from bench.train.tune import DEFAULT_GRID, plan, read_tuned, search_plan, select, trial_schedule, tune
from tests.toy_corpus import write_corpus

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------- the recipe
@pytest.mark.parametrize("spec", ["100M", "500M"])
def test_recipe_anneals_to_near_zero_at_the_token_budget(spec):
    s = get_schedule("short", **load_budget(spec).schedule_overrides("short"))
    assert s.decay == "cosine"
    per_step = s.batch_tokens  # simulate full batches: the trainer counts the tokens it really saw
    steps = range(s.max_tokens // per_step + 1)
    lrs = [learning_rate(s, step, step * per_step, s.warmup_steps * per_step) for step in steps]
    peak = int(np.argmax(lrs))
    assert peak in (s.warmup_steps - 1, s.warmup_steps) and max(lrs) == pytest.approx(s.lr)
    assert all(a <= b + 1e-12 for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))  # rising during warm-up
    assert all(a >= b - 1e-12 for a, b in zip(lrs[peak:], lrs[peak + 1 :]))  # then only falling
    assert lrs[-1] <= 0.01 * s.lr  # the evaluated weights are the end of the schedule
    # half-way through the decay the cosine is at half the peak
    half = s.warmup_steps + (len(lrs) - 1 - s.warmup_steps) // 2
    assert lrs[half] == pytest.approx(0.5 * s.lr, rel=0.02)


@pytest.mark.parametrize("spec, task, dropout", [("100M", "mt", 0.0), ("100M", "lm", 0.1), ("100M", "sum", 0.1),
                                                 ("500M", "mt", 0.0), ("500M", "lm", 0.1), ("500M", "sum", 0.1)])
def test_every_family_gets_the_shared_norm_placement_and_dropouts(spec, task, dropout):
    budget = load_budget(spec, task=task)
    for model in budget.models:
        cfg = solve_model(budget, model, confirm=False).config
        assert cfg.normalize_before is True
        assert (cfg.dropout, cfg.attention_dropout, cfg.activation_dropout) == (dropout, 0.0, 0.0)
        assert getattr(cfg, "weight_dropout", 0.0) == 0.0


def test_a_task_subsection_of_shared_applies_to_that_task_alone(tmp_path):
    """``shared: {dropout: 0.1, mt: {dropout: 0.0}}``: translation's rows get 0, language modelling's and
    summarization's 0.1, and their configs (so their record folders) are those of a file without the subsection."""
    plain = _budget_file(tmp_path, "")
    scoped = tmp_path / "scoped.yaml"
    line = next(x for x in plain.read_text().splitlines() if x.startswith("shared:"))
    assert "dropout: 0.1," in line
    scoped.write_text(plain.read_text() + line[:-1] + ", mt: {dropout: 0.0}}\n")
    for task, want in (("mt", 0.0), ("lm", 0.1), ("sum", 0.1)):
        budget = load_budget(scoped, task=task)
        for model in budget.models:
            cfg = solve_model(budget, model, confirm=False).config
            assert cfg.dropout == want and cfg.normalize_before is True
            if task != "mt":
                assert cfg == solve_model(load_budget(plain, task=task), model, confirm=False).config


def test_post_norm_variants_are_the_same_model_with_post_norm():
    budget = load_budget("100M")
    assert budget.rows() == [*budget.models, "transformer-postnorm", "lite_transformer-postnorm"]
    for key, family in (("transformer-postnorm", "transformer"), ("lite_transformer-postnorm", "lite_transformer")):
        var, base = solve_model(budget, key, confirm=False), solve_model(budget, family, confirm=False)
        assert var.model == family and var.config.normalize_before is False
        assert {**var.config.to_dict(), "normalize_before": True} == base.config.to_dict()
        assert var.macs == base.macs  # norms are not counted: the same budget point
        assert budget.label(key) == f"{family} (post-norm, paper)"
    big = load_budget("500M")  # the same extra rows at 500M, solved at 500M
    assert big.rows() == [*big.models, "transformer-postnorm", "lite_transformer-postnorm"]
    assert solve_model(big, "transformer-postnorm", confirm=False).config.normalize_before is False
    # the post-norm rows are translation's: LM and summarization sweeps leave them out
    for task in ("lm", "sum"):
        other = load_budget("100M", task=task)
        assert other.rows() == list(other.models) and set(other.models) <= set(budget.models)


def _budget_file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "b.yaml"
    path.write_text((REPO / "budgets" / "100M.yaml").read_text() + "\n" + extra)
    return path


@pytest.mark.parametrize(
    "extra, match",
    [
        ("shared: {dropuot: 0.1}\n", "shared key\\(s\\) dropuot"),
        ("shared: {d_model: 64}\n", "shared key\\(s\\) d_model"),
        ("shared: [1]\n", "'shared' must map"),
        ("shared: {mt: 0.1}\n", "'shared' must map"),
        ("shared: {mt: {dropuot: 0.0}}\n", "shared key\\(s\\) dropuot"),
        ("shared: {mt: {lm: {dropout: 0.0}}}\n", "shared key\\(s\\) lm"),
        ("variants: {x: {model: nope, set: {}}}\n", "variant 'x' needs 'model'"),
        ("variants: {x: {model: transformer, set: {kernel_sizes: [3]}}}\n", "sets unknown transformer key"),
        ("variants: {x: {model: transformer, set: {}, colour: red}}\n", "unknown key\\(s\\) colour"),
        ("variants: {transformer: {model: transformer, set: {}}}\n", "has the name of a family"),
        ("variants: {x: {model: transformer, set: {}, tasks: [mt, speech]}}\n", "'tasks' must be a list of"),
        ("variants: {x: {model: transformer, set: {}, tasks: mt}}\n", "'tasks' must be a list of"),
    ],
)
def test_bad_shared_or_variant_sections_are_one_line(tmp_path, extra, match):
    with pytest.raises(BenchError, match=match) as err:
        load_budget(_budget_file(tmp_path, extra))
    assert "\n" not in str(err.value)


def test_the_sweep_names_variant_rows_by_their_label(tmp_path):
    sweep = Sweep(SweepOptions(budget="100M", results_root=tmp_path, models=["transformer-postnorm", "transformer"]))
    var, base = sweep.plan("transformer-postnorm"), sweep.plan("transformer")
    assert var.model == "transformer" and var.common()["model"] == "transformer (post-norm, paper)"
    assert var.common()["variant"] == "transformer-postnorm" and base.common()["model"] == "transformer"
    assert var.folder.name.startswith("transformer-postnorm-") and var.key != base.key
    with pytest.raises(BenchError, match="unknown model"):
        Sweep(SweepOptions(budget="500M", results_root=tmp_path, models=["transformer-prenorm"]))


# ---------------------------------------------------------------------------- validation subset, plateau
def test_in_training_validation_is_a_fixed_random_sample():
    data = MTData([np.array([i], dtype=np.int32) for i in range(1000)], [np.array([i]) for i in range(1000)])
    a, b = subset(data, 50, seed=0), subset(data, 50, seed=0)
    ids = [int(x[0]) for x in a.src]
    assert ids == [int(x[0]) for x in b.src] and ids == sorted(ids) and len(set(ids)) == 50
    assert ids != list(range(50)) and max(ids) > 500  # spread over the split, not its first sentences
    assert [int(x[0]) for x in subset(data, 50, seed=1).src] != ids
    assert [int(x[0]) for x in subset(data, 50).src] == list(range(50))  # no seed: the first n
    assert subset(data, 5000, seed=0) is data
    blocks = (torch.arange(20).view(10, 2), torch.arange(20).view(10, 2) + 1)
    x, y = subset(blocks, 4, seed=3)
    assert x.shape == (4, 2) and torch.equal(y, x + 1)


def test_unigram_entropy_by_hand():
    tgt = [np.array([5, 6, 2]), np.array([5, 2])]  # counts: 5 -> 2, 6 -> 1, 2 (EOS) -> 2 of 5
    p = np.array([2, 1, 2]) / 5
    assert unigram_entropy(MTData(tgt, tgt), pad=1) == pytest.approx(float(-(p * np.log(p)).sum()))
    blocks = (torch.tensor([[0, 7, 7, 1]]), torch.tensor([[7, 7, 8, 1]]))  # pad (1) is not a token
    q = np.array([2, 1]) / 3
    assert unigram_entropy(blocks, pad=1) == pytest.approx(float(-(q * np.log(q)).sum()))


# ----------------------------------------------------------------------------------------------- tuning
def test_trials_are_the_recipe_truncated_or_in_miniature_and_equal_per_family():
    budget = load_budget("100M")
    base = get_schedule("short", **budget.schedule_overrides("short"))
    trials = plan(budget, base, "libreoffice-en-de")  # truncated by default
    assert len(trials) == 3 * len(budget.models) and {t.family for t in trials} == set(budget.models)
    for family in budget.models:
        mine = [t for t in trials if t.family == family]
        assert sorted(t.lr for t in mine) == [5e-4, 1e-3, 2e-3]
        assert {t.schedule.stop_tokens for t in mine} == {base.max_tokens // 3}
        assert {(t.schedule.max_tokens, t.schedule.warmup_steps) for t in mine} == {(base.max_tokens,
                                                                                      base.warmup_steps)}
    compressed = plan(budget, base, "libreoffice-en-de", kind="compressed")
    assert {t.schedule.max_tokens for t in compressed} == {base.max_tokens // 3}
    assert {t.schedule.stop_tokens for t in compressed} == {None}
    t = trial_schedule(base, 2e-3, base.max_tokens // 4, "compressed")
    assert t.warmup_steps == round(base.warmup_steps / 4) and t.decay == base.decay and t.min_lr == base.min_lr
    t = trial_schedule(base, 2e-3, base.max_tokens // 4)
    assert t.to_dict() == {**base.to_dict(), "lr": 2e-3, "stop_tokens": base.max_tokens // 4}
    assert "stop_tokens" not in base.to_dict()  # every other run's record and hash stay as they were
    assert len({t.key for t in trials}) == len(trials)  # a trial's record is tied to its config and schedule
    assert not {t.key for t in trials} & {t.key for t in compressed}
    with pytest.raises(BenchError, match="trial kind"):
        trial_schedule(base, 2e-3, 1000, "short")
    with pytest.raises(BenchError, match="stop_tokens"):
        base.with_overrides(stop_tokens=base.max_tokens + 1).check()
    with pytest.raises(BenchError, match="grid"):
        plan(budget, base, "x", grid=(1e-3, 1e-3))
    with pytest.raises(BenchError, match="not among the families"):
        plan(budget, base, "x", models=["transformer-postnorm"])


def test_a_truncated_run_is_the_first_part_of_the_full_run(tmp_path):
    """Stopped at stop_tokens, a run has followed the full schedule step for step: the same rates and losses as
    the untruncated run over the same updates (warm-up and decay laid out over max_tokens)."""
    corpus = write_corpus(tmp_path / "toy")
    sched = get_schedule("quick", max_tokens=6000, max_steps=None, batch_tokens=256, warmup_steps=4,
                         valid_every=1000, valid_sentences=None, checkpoint_every=1000, log_every=1, precision="fp32",
                         max_len=64, eval_beam=1, eval_sentences=None, lr=3e-3, decay="cosine")
    data = load_task_data(str(corpus), "mt", sched, vocab_size=60)
    cfg = dict(d_model=32, heads=4, encoder_layers=1, decoder_layers=1, ffn_dim=64, dropout=0.1)
    cut = Trainer("transformer", cfg, data, sched.with_overrides(stop_tokens=2000), 1, tmp_path / "cut",
                  progress=False).run(resume=False)
    assert cut["stop"] == "stop_tokens" and 2000 <= cut["train_tokens"] < 2000 + 256
    steps = cut["train_steps"]
    full = Trainer("transformer", cfg, data, sched.with_overrides(max_steps=steps), 1, tmp_path / "full",
                   progress=False).run(resume=False)
    assert full["train_steps"] == steps

    def log(run: str) -> list[tuple]:
        rows = [json.loads(line) for line in (tmp_path / run / "train.jsonl").read_text().splitlines()]
        return [(r["step"], r["tokens"], r["lr"], r["train_loss"]) for r in rows if r.get("lr") is not None]

    assert log("cut") == log("full") and {row[0] for row in log("cut")} == set(range(1, steps + 1))
    assert log("cut")[-1][2] > 0.5 * sched.lr  # far from the end of the cosine: not a schedule in miniature


def test_the_end_weights_are_validated_on_the_in_training_sample_too(tmp_path):
    """The failed-run drift check compares the best in-training validation with the end weights on the same
    sample: with the last update on a validation step, the record's figure is that in-training value, and the
    whole split's differs from it."""
    corpus = write_corpus(tmp_path / "toy")
    sched = get_schedule("quick", max_tokens=None, max_steps=6, batch_tokens=256, warmup_steps=2, valid_every=3,
                         valid_sentences=10, checkpoint_every=1000, log_every=1, precision="fp32", max_len=64,
                         eval_beam=1, eval_sentences=None, lr=3e-3, decay="cosine")
    data = load_task_data(str(corpus), "mt", sched, vocab_size=60)
    cfg = dict(d_model=32, heads=4, encoder_layers=1, decoder_layers=1, ffn_dim=64, dropout=0.0)
    out = Trainer("transformer", cfg, data, sched, 1, tmp_path / "run", progress=False).run(resume=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    in_training = {r["step"]: r["valid_nll"] for r in rows if r.get("valid_nll") is not None and not r.get("final")}
    assert sorted(in_training) == [3, 6] and out["best_valid_nll"] == min(in_training.values())
    assert out["final_sample_valid_nll"] == pytest.approx(in_training[6], abs=1e-4)
    assert abs(out["valid_nll"] - out["final_sample_valid_nll"]) > 1e-4  # 10 sentences are not the whole split


def _rec(family, lr, nll, tokens=100):
    return {"family": family, "lr": lr, "valid_nll": nll, "tokens_per_trial": tokens, "train_tokens": tokens}


def test_selection_is_on_validation_nll_and_diverged_trials_never_win():
    chosen = select(
        [_rec("a", 5e-4, 4.0), _rec("a", 1e-3, 3.5), _rec("a", 2e-3, None),  # 2e-3 diverged
         _rec("b", 5e-4, 3.0), _rec("b", 1e-3, 3.0), _rec("b", 2e-3, 3.2)]  # a tie goes to the smaller rate
    )
    assert chosen["a"]["lr"] == 1e-3 and chosen["b"]["lr"] == 5e-4
    assert chosen["a"]["trials"] == chosen["b"]["trials"] == 3 and chosen["a"]["target_tokens"] == 300
    with pytest.raises(BenchError, match="unequal"):
        select([_rec("a", 1e-3, 3.0), _rec("a", 2e-3, 3.1), _rec("b", 1e-3, 3.0)])
    with pytest.raises(BenchError, match="unequal"):
        select([_rec("a", 1e-3, 3.0), _rec("b", 1e-3, 3.0, tokens=50)])
    with pytest.raises(BenchError, match="every trial of a diverged"):
        select([_rec("a", 1e-3, None)])


def test_the_budget_files_tune_section_sets_the_grid_and_the_trial_size(tmp_path):
    short = lambda b: get_schedule("short", **b.schedule_overrides("short"))  # noqa: E731
    b100, b500 = load_budget("100M"), load_budget("500M")
    # translation: truncated trials of a third of the recipe (past its 0.5M-token warm-up) at both budgets
    assert search_plan(b100, short(b100)) == ((5e-4, 1e-3, 2e-3, 4e-3, 8e-3), 2_000_000 // 3, "truncated")
    # (500M's dropout-0 search put ET at 2e-3, its upper edge, so 4e-3 joined for every family: trials stay a third)
    assert search_plan(b500, short(b500)) == ((5e-4, 1e-3, 2e-3, 4e-3), 2_000_000 // 3, "truncated")
    # another task has its own plan (or the top level's): translation's search says nothing about its rates
    b = load_budget("100M", task="sum")
    assert search_plan(b, short(b)) == ((5e-4, 1e-3, 2e-3, 4e-3), 600_000 // 4, "truncated")
    b = load_budget("500M", task="sum")  # a fifth rate below, with the trials kept at a quarter of the recipe
    assert search_plan(b, short(b)) == ((2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3), 600_000 // 4, "truncated")
    lm = load_budget("100M", task="lm")
    assert search_plan(lm, short(lm)) == ((5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2), 2_000_000 // 3, "truncated")
    lm = load_budget("500M", task="lm")
    assert search_plan(lm, short(lm)) == ((1e-3, 2e-3, 4e-3, 8e-3), 2_000_000 // 3, "truncated")
    # the command line wins; a file without the section gets the defaults (plan divides by the grid's size)
    assert search_plan(b100, short(b100), (1e-3,), 1000, "truncated") == ((1e-3,), 1000, "truncated")
    plain = tmp_path / "plain.yaml"
    text = (REPO / "budgets" / "100M.yaml").read_text()
    plain.write_text(text[:text.index("\ntune:")] + text[text.index("\n# Training: one recipe"):])
    b = load_budget(str(plain))
    assert b.tune is None and search_plan(b, short(b)) == (DEFAULT_GRID, None, "truncated")
    for bad, why in (("tune: {grid: []}", "distinct positive"), ("tune: {grid: [1e-3, 1e-3]}", "distinct positive"),
                     ("tune: {grid: [-1e-3]}", "distinct positive"), ("tune: {grid: [1e-3], trials_per_seed: 0}",
                                                                      "positive integer"),
                     ("tune: {grid: [1e-3], rates: 3}", "unknown key"), ("tune: 3", "must be a mapping"),
                     ("tune: {grid: [1e-3], sum: {grid: [0]}}", "'tune: sum: grid' must be"),
                     ("tune: {grid: [1e-3], lm: 2}", "'tune: lm' must be a mapping"),
                     ("tune: {grid: [1e-3], trials: short}", "'tune: trials' must be one of truncated")):
        with pytest.raises(BenchError, match=why):
            load_budget(str(_budget_file(tmp_path, bad + "\n")))


def test_tune_end_to_end_on_the_toy_corpus_and_the_sweep_uses_its_choice(tmp_path):
    corpus = write_corpus(tmp_path / "toy")
    budget = _budget_file(tmp_path, "shared: {normalize_before: true, dropout: 0.1, vocab_size: 60}\n")
    assert "\n  trials: truncated\n" in budget.read_text()  # the budget file's translation plan
    results = tmp_path / "results"
    log: list[str] = []
    res = tune(str(budget), grid=(1e-3, 3e-3), models=["transformer"], tokens_per_trial=1500, corpus=str(corpus),
               results_root=results, cache_root=tmp_path / "cache", log=log.append, kind="truncated")
    folder = results / "100M" / "tuning"
    trials = [json.loads((folder / name).read_text()) for name in res["trials"]]
    assert len(trials) == 2 and all(t["valid_nll"] is not None and t["threads"] == 1 for t in trials)
    assert all(t["tokens_per_trial"] == 1500 and 1500 <= t["train_tokens"] < res["recipe_tokens"] for t in trials)
    assert all(t["schedule_config"]["decay"] == "cosine" and t["schedule_config"]["lr"] == t["lr"] for t in trials)
    # truncated (the default): the recipe's own token budget and warm-up, stopped after the trial's tokens
    assert all(t["trial_kind"] == "truncated" and t["schedule_config"]["stop_tokens"] == 1500
               and t["schedule_config"]["max_tokens"] == res["recipe_tokens"] for t in trials)
    assert res["trial_kind"] == "truncated"
    best = min(trials, key=lambda t: t["valid_nll"])
    assert res["chosen"]["transformer"]["lr"] == best["lr"]
    assert json.loads((folder / "chosen.json").read_text())["chosen"] == res["chosen"]
    assert res["cost_in_seeds"] == pytest.approx(2 * 1500 / res["recipe_tokens"], abs=1e-3)
    # a second call runs nothing again
    again = tune(str(budget), grid=(1e-3, 3e-3), models=["transformer"], tokens_per_trial=1500, corpus=str(corpus),
                 results_root=results, cache_root=tmp_path / "cache", log=log.append, kind="truncated")
    assert again["chosen"] == res["chosen"] and sum("done before" in m for m in log) == 2
    # bench run reads the choice for the family and its variants; quick runs are not tuned
    sweep = Sweep(SweepOptions(budget=str(budget), results_root=results, corpus=str(corpus)))
    assert read_tuned(sweep.results, sweep.schedule) == {"transformer": best["lr"]}
    assert sweep.plan("transformer").schedule.lr == best["lr"]
    assert sweep.plan("transformer-postnorm").schedule.lr == best["lr"]
    assert sweep.plan("lite_transformer").schedule.lr == sweep.schedule.lr  # not tuned here: the recipe's rate
    quick = results / "100M-quick" / "tuning"
    quick.mkdir(parents=True)
    (quick / "chosen.json").write_text((folder / "chosen.json").read_text())
    assert Sweep(SweepOptions(budget=str(budget), results_root=results, quick=True)).tuned == {}
    assert math.isfinite(best["unigram_entropy"]) and best["unigram_entropy"] > 0
    # a choice made for another recipe or another kind of trial is stale: not used, with a note
    assert read_tuned(folder.parent, sweep.schedule, "truncated") == {"transformer": best["lr"]}
    assert read_tuned(folder.parent, sweep.schedule, "compressed") == {}
    assert read_tuned(folder.parent, sweep.schedule.with_overrides(max_tokens=res["recipe_tokens"] + 1)) == {}
    other = _budget_file(tmp_path, "")
    other.write_text(other.read_text().replace("\n  trials: truncated\n", "\n  trials: compressed\n", 1))
    stale = Sweep(SweepOptions(budget=str(other), results_root=results, corpus=str(corpus)))
    assert stale.budget.tune.trials == "compressed" and stale.tuned == {}
    assert stale.plan("transformer").schedule.lr == stale.schedule.lr


# ------------------------------------------------------------------------------------- concurrent sweeps
def test_stage_locks_let_other_seeds_run_beside_a_stage(tmp_path):
    """Two sweeps of one budget with different seeds train side by side; the same stage still serializes."""
    import fcntl

    from bench.infra.stage_lock import locked

    def free(name: str) -> bool:
        with open(tmp_path / f".lock-{name}", "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(fh, fcntl.LOCK_UN)
            return True

    with locked(tmp_path, "train-s1"):
        assert not free("train-s1") and free("train-s2") and free("eval-s1")
    assert free("train-s1")


def test_another_schedule_gets_a_results_folder_of_its_own(tmp_path):
    """A full-schedule (GPU) or quick run never mixes with, or overwrites, the short schedule's records."""
    for schedule, quick, name in (("short", False, "100M"), ("full", False, "100M-full"), ("short", True, "100M-quick"),
                                  ("quick", False, "100M-quick")):
        sweep = Sweep(SweepOptions(budget="100M", schedule=schedule, quick=quick, results_root=tmp_path))
        assert sweep.results == tmp_path / name
    assert load_budget("500M", task="lm").results_name("full") == "500M-lm-full"
    assert load_budget("500M", task="sum").results_name() == "500M-sum"


def test_the_gpu_full_schedule_command_runs_end_to_end_on_a_tiny_config(tmp_path):
    """What `make bench BUDGET=100M DEVICE=cuda SCHEDULE=full` runs, on the CPU with the full schedule shrunk
    (a budget file's `train: full:`), so that a GPU's minutes go to the run, not to finding a bug."""
    corpus = write_corpus(tmp_path / "toy")
    budget = _budget_file(tmp_path, "shared: {normalize_before: true, dropout: 0.1, vocab_size: 60}\n"
                                    "train:\n  full: {max_tokens: 3000, batch_tokens: 256, warmup_steps: 4, "
                                    "valid_every: 5, valid_sentences: 10, checkpoint_every: 5, log_every: 2, "
                                    "eval_sentences: 8, eval_beam: 2}\n")
    Sweep(SweepOptions(budget=str(budget), schedule="full", device="cpu", models=["transformer"],
                       stages=("profile", "train", "evaluate"), corpus=str(corpus), results_root=tmp_path / "r",
                       cache_root=tmp_path / "c", log=lambda m: None)).run()
    (run,) = (tmp_path / "r" / "100M-full" / "runs").glob("transformer-*")
    train = json.loads((run / "train-s1.json").read_text())
    ev = json.loads((run / "eval-s1.json").read_text())
    assert train["schedule"] == "full" and train["schedule_config"]["max_tokens"] == 3000
    assert train["schedule_config"]["decay"] == get_schedule("full").decay and train["device"] == "cpu"
    assert math.isfinite(ev["test"]["bleu"]) and not (tmp_path / "r" / "100M").exists()
