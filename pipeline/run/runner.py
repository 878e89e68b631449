"""Run the stages once: prepare -> score the base model -> train -> evaluate; time each.

The runner computes and returns a RunResult; every figure goes onto it the moment
it is measured (training loss and dev metrics at the step the trainer logs
them), and the result passes it on to its sink (the recorder in tracking/, the
only code that speaks to MLflow).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from pipeline import distributed, progress
from pipeline.run import cost, models
from pipeline.run.prepare import Prepared, prepare
from pipeline.run.result import RunResult, Sink
from pipeline.stages import encoding, evaluate, test_sets, train
from pipeline.stages.retrieval_metrics import METRICS
from pipeline.tracking.names import MODEL_DIR, warning

log = logging.getLogger(__name__)


def step_texts(train_log: dict, batch_size: int, k: int) -> float:
    """Texts this process fed the model per step: those the loss measured (with and without
    gradients); a loss that embeds its own texts measures none, and B * (2 + k) stands in."""
    step = train_log["step"]
    return (step["step/texts_with_grad"] + step["step/texts_without_grad"] if step
            else cost.texts_per_step(batch_size, k))


def train_metrics(train_log: dict, texts_per_step: float) -> dict[str, float]:
    """Throughput from the trainer's log history; dev-evaluation cost from the timed evaluations.

    Pure training time is the training loop minus the evaluations inside it (bank refreshes
    stay in); the eval fraction divides all dev evaluation time (a final one after the loop
    included) by it. `texts_per_step` counts every process's texts (step_texts, summed).
    """
    history = train_log["log_history"]
    summary = next(entry for entry in reversed(history) if "train_runtime" in entry)
    evals = train_log["dev_evals"]
    eval_s = sum(entry["seconds"] for entry in evals)
    steps = train_log["global_step"]
    pure_s = max(summary["train_runtime"] - sum(e["seconds"] for e in evals if e["in_train"]), 1e-9)
    return {
        "train/steps": steps,
        "train/runtime_s": summary["train_runtime"],
        "train/samples_per_s": summary["train_samples_per_second"],
        "train/texts_per_s": steps * texts_per_step / pure_s,
        "train/s_per_step": pure_s / max(steps, 1),
        "train/final_loss": summary["train_loss"],
        "eval/count": len(evals),
        "time/train_pure_s": pure_s,
        "time/eval_in_train_s": eval_s,
        "time/eval_fraction": eval_s / pure_s,
    }


def eval_cost_warnings(metrics: dict, train_log: dict) -> dict[str, str]:
    """Warnings worth a tag: the train stage's own, and dev evaluation costing more than training."""
    warnings = dict(train_log["warnings"])
    if metrics["time/eval_fraction"] > 1:
        warnings["eval_dominates"] = (
            f"dev evaluation took {metrics['time/eval_in_train_s']:.1f} s, "
            f"{metrics['time/eval_fraction']:.1f}x the pure training time: evaluate less often "
            "(eval.cadence, eval.every), cap the dev set (split.max_dev, eval.dev_max_corpus) "
            "or use eval.kind=loss.")
        log.warning(warnings["eval_dominates"])
    return warnings


def _base_scores(cfg: DictConfig, prepared: Prepared, test_set, result: RunResult) -> dict:
    """The base model's test metrics, scored before training changes it; cached per (test set, model)."""
    entry, seconds = prepared.cache.get("base_eval", prepared.keys["base_eval"], lambda out: evaluate.run(
        prepared.model, test_set, cfg.eval.batch_size, out, cfg.eval.query_prompt, cfg.eval.corpus_prompt,
        "base eval"))
    base = json.loads((entry.path / "metrics.json").read_text())
    result.add({"time/base_eval_s": seconds} | {f"base/{name}": base[name] for name in METRICS})
    result.add_artifact(entry.path / evaluate.PER_QUERY, "base")
    return base


def _train(cfg: DictConfig, hardware, prepared: Prepared, result: RunResult) -> None:
    dev = evaluate.dev_setup(cfg.eval, prepared.splits, cfg.split.seed)
    result.add(dev.sizes)
    cost.reset_peak_memory(hardware.device)
    start = time.perf_counter()
    with progress.stage("train"):
        train_log = train.run(cfg, prepared.model, prepared.train_ds, hardware, dev, result.run_dir,
                              prepared.bank, result.add_step)
    result.add({"time/train_s": time.perf_counter() - start} | cost.peak_memory(hardware.device)
               | train_log["step"])
    texts = sum(distributed.all_gather(step_texts(train_log, cfg.train.batch_size, cfg.k)))  # every process's
    figures = train_metrics(train_log, texts)
    result.add(figures, {warning(name): text
                         for name, text in eval_cost_warnings(figures, train_log).items()})


def _test(cfg: DictConfig, prepared: Prepared, test_set, base: dict, result: RunResult) -> None:
    start = time.perf_counter()
    test_dir = result.run_dir / "test"
    test_dir.mkdir(exist_ok=True)
    with progress.stage("test"):
        tuned = evaluate.run(prepared.model, test_set, cfg.eval.batch_size, test_dir,
                             cfg.eval.query_prompt, cfg.eval.corpus_prompt)
    result.add_artifact(test_dir / evaluate.PER_QUERY, "test")
    test_s = time.perf_counter() - start
    figures = {"time/test_s": test_s, "time/eval_s": test_s + result.metrics["time/base_eval_s"],
               "test/corpus_size": tuned["corpus_size"], "test/queries": tuned["queries"]}
    for name in METRICS:
        figures |= {f"test/{name}": tuned[name], f"gain/{name}": tuned[name] - base[name]}
    result.add(figures, {MODEL_DIR: str(result.model_dir)})


def _assist(cfg: DictConfig, hardware, result: RunResult) -> RunResult:
    """Every process of a multi-process run but 0: encode shares while process 0 builds the
    stages and scores the base model, train with it, encode shares of its test scoring."""
    model = models.load_model(cfg.model, device=hardware.model_device)
    encoding.serve(model)
    prepared = prepare(cfg, hardware, result, model=model)  # every stage is in the cache now
    _train(cfg, hardware, prepared, result)
    encoding.serve(prepared.model)
    return result


def _world_figures(cfg: DictConfig) -> tuple[dict, dict]:
    """How many processes trained, on what, and the batch they made together."""
    world = distributed.world_size()
    return ({"dist/world_size": world, "train/batch_per_device": cfg.train.batch_size,
             "train/global_batch": cfg.train.batch_size * world},
            {"dist/world_size": str(world), "dist/backend": distributed.backend(),
             "dist/launcher": distributed.launcher()})


def run(cfg: DictConfig, hardware, sink: Sink | None = None) -> RunResult:
    """Run the pipeline once for config `cfg` on the resolved `hardware`; figures go to `sink` as
    measured. In a multi-process run process 0 leads and the others assist (pipeline.distributed)."""
    import datasets

    datasets.disable_progress_bars()
    result = RunResult(Path(cfg.paths.run_dir), sink)
    if not distributed.is_main():
        return _assist(cfg, hardware, result)
    result.run_dir.mkdir(parents=True, exist_ok=True)
    result.add(*_world_figures(cfg))
    result.add(tags=hardware.tags())
    start = time.perf_counter()
    with distributed.leading():
        prepared = prepare(cfg, hardware, result)
        test_set = evaluate.build_test_set(cfg.eval, prepared.splits, cfg.split.seed)
        result.add_input("test", test_set.as_rows(), test_set.fingerprint())
        result.add(test_sets.leaks(test_set, prepared.splits["train"], prepared.splits["dev"]))
        base = _base_scores(cfg, prepared, test_set, result)
    result.add(cost.predict(cfg, prepared.model, prepared.train_ds, prepared.bank))
    _train(cfg, hardware, prepared, result)
    with distributed.leading():
        _test(cfg, prepared, test_set, base, result)
    result.add({"time/total_s": time.perf_counter() - start})
    return result
