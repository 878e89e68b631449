"""Compute budgets: equal budgets spend equal compute, the schedule spans the steps a budget buys,
every dev evaluation carries the compute spent by then, and online bank mining never picks a
positive. Real tiny training runs (the static model), in-process through the driver."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from helpers import compose
from pipeline import driver
from pipeline.app import check
from pipeline.losses.online_mining import MinerFilters, OnlineMiner
from pipeline.result import RunResult

SMALL = ["model=static", "train.batch_size=16", "train.logging_steps=2", "eval=steps", "eval.every=6",
         "eval.test_distractors=200", "eval.dev_distractors=100", "data.max_rows=800", "train.learning_rate=0.05",
         "train.max_steps=-1"]


def _run(tmp_path: Path, cache: Path, *overrides: str) -> RunResult:
    run_dir = tmp_path / "run"
    cfg = compose([*SMALL, f"paths.cache_dir={cache}", f"paths.run_dir={run_dir}", *overrides])
    result = RunResult(run_dir)
    driver.run(cfg, check(cfg), result)
    return result


@pytest.mark.parametrize("setup", [["k=0"], ["k=4"], ["k=4", "loss.negatives=frozen"], ["k=4", "loss.negatives=bank"],
                                   ["k=4", "loss.negatives=bank", "loss.bank_mining=online"]],
                         ids=["k0", "live", "frozen", "bank", "bank-online"])
def test_a_budget_of_texts_is_spent_within_one_step(setup, tmp_path, shared_cache):
    result = _run(tmp_path, shared_cache, "train.budget=1000", *setup)
    figures = result.metrics
    per_step = figures["budget/per_step"]
    assert figures["budget/steps"] == figures["train/steps"] == 1000 // per_step
    assert 1000 - per_step < figures["budget/spent"] == figures["spent/texts"] <= 1000
    assert figures["budget/epochs"] == pytest.approx(figures["train/epochs"], rel=0.05)


def test_equal_budgets_buy_more_steps_where_a_step_costs_less(tmp_path, shared_cache):
    live = _run(tmp_path / "live", shared_cache, "train.budget=1500", "k=4")
    bank = _run(tmp_path / "bank", shared_cache, "train.budget=1500", "k=4", "loss.negatives=bank")
    # live embeds B * (2 + k) texts with gradients a step, bank only the anchors and positives: 2B
    assert live.metrics["budget/per_step"] == 16 * 6 and bank.metrics["budget/per_step"] == pytest.approx(32, abs=0.5)
    assert bank.metrics["train/steps"] >= 2.9 * live.metrics["train/steps"]


def test_a_budget_of_tokens_buys_steps_from_the_measured_token_passes(tmp_path, shared_cache):
    result = _run(tmp_path, shared_cache, "train.budget=400000", "train.budget_unit=tokens", "k=2",
                  "loss.negatives=frozen")
    figures = result.metrics
    # frozen negatives: a forward only, one token-pass a token; anchors and positives three
    with_grad, padded = figures["cost/step_tokens_padded_with_grad"], figures["cost/step_tokens_padded"]
    assert figures["budget/per_step"] == pytest.approx(3 * with_grad + (padded - with_grad))
    assert figures["train/steps"] == figures["budget/steps"] == 400000 // figures["budget/per_step"]
    # the batches' real tokens vary around the cost model's mean: spent is measured, within 10 %
    assert figures["spent/tokens"] == pytest.approx(figures["budget/steps"] * figures["budget/per_step"], rel=0.1)


def test_the_schedule_spans_the_steps_the_budget_buys_and_dev_points_carry_the_spend(tmp_path, shared_cache):
    result = _run(tmp_path, shared_cache, "train.budget=2048", "k=2", "train.warmup_ratio=0.1")  # 32 steps of 64 texts
    steps = int(result.metrics["budget/steps"])
    rates = [(step, figures["train/learning_rate"]) for step, figures in result.history
             if "train/learning_rate" in figures]
    peak = max(rate for _, rate in rates)
    assert peak == pytest.approx(0.05, rel=0.2)  # warmup reached the configured rate
    last_step, last_rate = rates[-1]
    # linear decay to 0 at the last step: one step's worth left at the last log (warmup: 4 of 32 steps)
    assert last_step == steps and last_rate == pytest.approx(0.05 / (steps - 4))
    dev = {step for step, figures in result.history if "dev/ndcg_at_10" in figures}
    spent = {step: figures["spent/texts"] for step, figures in result.history if "spent/texts" in figures}
    assert dev and dev <= set(spent)
    assert all(spent[a] < spent[b] for a, b in zip(sorted(dev), sorted(dev)[1:]))


def test_a_budget_of_seconds_is_calibrated_on_a_copy_of_the_model(tmp_path, shared_cache, monkeypatch):
    from pipeline.stages import budget

    seen = {}
    real = budget.seconds_per_step

    def watched(cfg, hardware, model, train_ds, bank):
        before = copy.deepcopy(model.state_dict())
        seconds = real(cfg, hardware, model, train_ds, bank)
        seen["untouched"] = all(torch.equal(before[name], value) for name, value in model.state_dict().items())
        return seconds

    monkeypatch.setattr(budget, "seconds_per_step", watched)
    result = _run(tmp_path, shared_cache, "train.budget=2", "train.budget_unit=seconds", "k=2")
    assert seen["untouched"]
    assert result.metrics["train/steps"] == result.metrics["budget/steps"] >= 1
    assert result.metrics["spent/seconds"] > 0 and result.tags["budget/unit"] == "seconds"


def test_online_mining_never_picks_a_positive_even_when_positives_score_highest():
    torch.manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(50, 8), dim=-1)
    positives = torch.tensor([[3, 7, -1], [10, -1, -1], [0, 1, 2]])
    anchors = vectors[[3, 10, 1]] + 0.01 * torch.randn(3, 8)  # each anchor sits on its own positive
    mined = torch.tensor([[20, 21, 22, 23], [24, 25, 26, 27], [28, 29, 30, 31]])
    for filters in (MinerFilters(), MinerFilters(range_min=2), MinerFilters(relative_margin=0.05),
                    MinerFilters(absolute_margin=0.2, max_score=0.9)):
        miner = OnlineMiner(filters)
        chosen = miner.pick(anchors, vectors, mined, positives)
        assert chosen.shape == (3, 4)
        for row, ids in enumerate(chosen.tolist()):
            assert not set(ids) & {p for p in positives[row].tolist() if p >= 0}
        figures = miner.means()
        assert 0 <= figures["bank/removed_by_margin"] <= 1 and 0 <= figures["bank/not_mined"] <= 1


def test_online_mining_follows_the_margin_and_takes_the_hardest_left():
    vectors = torch.eye(6)[:, :4]  # 6 vectors, the last two are zero: scored 0
    vectors[4] = torch.tensor([0.9, 0.1, 0.0, 0.0])
    vectors[5] = torch.tensor([0.5, 0.5, 0.0, 0.0])
    anchor = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    positives, mined = torch.tensor([[0]]), torch.tensor([[1, 2]])
    # cosines to the anchor: 0 (positive) 1.0, 4: 0.994, 5: 0.707, the rest 0
    picked = OnlineMiner(MinerFilters()).pick(anchor, vectors, mined, positives)
    assert picked.tolist() == [[4, 5]]
    # a 5 % relative margin below the positive's 1.0 removes 4 (0.994 > 0.95)
    picked = OnlineMiner(MinerFilters(relative_margin=0.05)).pick(anchor, vectors, mined, positives)
    assert picked[0, 0].item() == 5


def test_online_mining_on_the_base_model_picks_what_the_mining_stage_picked(tmp_path, shared_cache):
    """Before the first update the bank holds the mining stage's vectors and the anchors are the
    base model's: re-mining must find the mined negatives again."""
    from pipeline.stages.stage import Context
    from pipeline.stages.train import trainer_for

    cfg = compose([*SMALL, "k=4", "loss.negatives=bank", "loss.bank_mining=online", "loss.bank_refresh_steps=0",
                   f"paths.cache_dir={shared_cache}", f"paths.run_dir={tmp_path}"])
    ctx = Context(cfg, check(cfg), RunResult(tmp_path))
    splits, model, trainings = driver.prepare(ctx)
    (training,) = trainings.values()
    _, loss = trainer_for(cfg, ctx.hardware, model, training.rows, training.bank, tmp_path)
    rows = training.bank.train_ds[:64]
    label = torch.tensor(rows["label"])
    with torch.no_grad():
        anchors = model.encode(rows["anchor"], convert_to_tensor=True, normalize_embeddings=True)
    # the label: the k mined ids, then the anchor's positives (mine.with_corpus_ids)
    chosen = loss.miner.pick(anchors, loss.bank.vectors, label[:, :4], label[:, 4:])
    agree = (chosen == label[:, :4]).float().mean().item()
    assert agree >= 0.95, agree  # ties between equal scores may order differently


def test_a_bank_refresh_is_paid_where_the_run_takes_one():
    """Refreshes come after every bank_refresh_steps steps but the last: a budget buys the most steps
    whose steps and refreshes fit, and a run shorter than one refresh interval pays for none."""
    from omegaconf import OmegaConf

    from pipeline.stages.budget import steps_bought

    def bought(amount: float, refresh: float) -> int:
        cfg = OmegaConf.create({"k": 4, "train": {"budget": amount, "budget_unit": "seconds", "batch_size": 16},
                                "loss": {"bank_refresh_steps": 10}})
        return steps_bought(cfg, 10.0, refresh)

    assert bought(1000, 0.0) == 100
    assert bought(1000, 25.0) == 80  # 80 steps and 7 refreshes: 975; 81 steps take an 8th: 1,010
    assert bought(95, 25.0) == 9  # no refresh before the 10th step
    assert bought(100, 25.0) == 10  # the 10th step is the last: no refresh after it
