"""What the MLflow UI shows of a run before opening it: its name and description, the sweep's
parent's name, and the metric names the report gives each row (all from real composed configs)."""

from __future__ import annotations

import pytest

from helpers import compose
from pipeline.report.answer import slug, slugs
from pipeline.tracking.describe import description, run_name, sweep_name


@pytest.mark.parametrize(("overrides", "name"), [
    (["+experiment=hn_k8"], "hn_k8 k8 mnrl live s42"),
    (["model=static", "k=0", "seed=1"], "k0 mnrl s1"),  # no negatives to name at k=0
    (["model=static", "loss.negatives=bank", "loss.bank_mining=online", "train.budget=3200"],
     "k8 mnrl bank online 3200texts s42"),
    (["model=static", "data=translations", "data.languages=[de,fr]", "loss=cached_mnrl", "k=2"],
     "k2 cached_mnrl 2src s42"),  # GradCache embeds its own negatives: no mode
    (["model=static", "mlflow.run_name=my run"], "my run"),
])
def test_a_run_is_named_after_what_it_is(overrides, name):
    assert run_name(compose(overrides)) == name


def test_a_sweep_job_is_named_after_the_other_keys_its_sweep_varies_too():
    cfg = compose(["model=static", "train.learning_rate=0.034567", "loss.scale=30"])
    swept = ["k", "train.learning_rate", "+loss.scale", "hydra.sweeper.n_trials"]
    assert run_name(cfg, swept) == "k8 mnrl live s42 learning_rate=0.0346 scale=30"


def test_the_description_says_model_data_training_and_once_finished_the_result():
    cfg = compose(["model=static", "k=4", "data.max_rows=800", "train.max_steps=20", "train.learning_rate=0.05"])
    before = description(cfg)
    assert before == ("the static model fine-tuned on docstrings data (at most 800 rows) with mnrl on k=4 live hard "
                      "negatives: 20 steps in batches of 32 at learning rate 0.05, seed 42.")
    after = description(cfg, {"test/ndcg_at_10": 0.34391, "gain/ndcg_at_10": 0.0123, "time/train_s": 24.04,
                              "train/steps": 20})
    assert after == before + " Test nDCG@10 0.3439 (+0.0123 over the base model), 24.0 s of training (20 steps)."


def test_a_sweep_is_named_after_its_preset_or_what_it_sweeps():
    assert sweep_name("find_k", {"k": "0,8"}, "20261202-053550-acd2") == "sweep find_k acd2"
    assert sweep_name("none", {"k": "0,8", "model": "static", "train.learning_rate": "interval(0.01,0.1)"},
                      "20261202-053550-acd2") == "sweep k=0,8 train.learning_rate=interval(0.01,0.1) acd2"
    assert sweep_name("none", {"objectives": "[test/ndcg_at_10,time/train_s]", "data.include": "[de],[de,fr]"},
                      "20261202-053550-acd2") == "sweep data.include=[de],[de,fr] acd2"  # a list is no sweep


def test_each_report_row_has_a_metric_name_mlflow_takes():
    assert slug({"k": 8, "loss": "mnrl", "config": ""}) == "k8_mnrl"
    assert slug({"k": 8, "loss": "mnrl", "config": "loss.bank_mining=online loss.negatives=bank train.budget=640.0"}) \
        == "k8_mnrl_bank_mining-online_negatives-bank_budget-640"
    assert slug({"k": 8, "loss": "mnrl", "config": "data.include=['de', 'fr'] seed=1"}) == \
        "k8_mnrl_include-_de_fr_seed-1"
    long = slug({"k": 8, "loss": "mnrl", "config": " ".join(f"train.key{i}=value{i}" for i in range(40))})
    assert len(long) == 120


def test_a_rows_float_is_as_short_in_its_metric_names_as_in_run_names_unless_two_rows_would_share_them():
    rows = [{"k": 4, "loss": "mnrl", "config": f"train.learning_rate={lr}"} for lr in (0.028169383631645055, 1e-05)]
    assert list(slugs(rows).values()) == ["k4_mnrl_learning_rate-0.0282", "k4_mnrl_learning_rate-1e-05"]
    close = [{"k": 4, "loss": "mnrl", "config": f"train.learning_rate={lr}"} for lr in (0.02817, 0.028169)]
    assert list(slugs(close).values()) == ["k4_mnrl_learning_rate-0.02817", "k4_mnrl_learning_rate-0.028169"]
