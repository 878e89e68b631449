"""Wire the stages: split -> mine -> train -> evaluate; time each; log to MLflow.

Stages only read config and inputs and write outputs; this module owns the
stage cache, the clock and the MLflow run.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline import cost, embed, evaluate, hardware, mine, models, split, tracking, train
from pipeline.cache import Entry, StageCache, stage_key

log = logging.getLogger(__name__)


def _cfg(node: DictConfig) -> dict:
    return OmegaConf.to_container(node, resolve=True)


def _cache_metrics(entry: Entry, spent_s: float) -> tuple[dict, dict]:
    """time/<stage>_s (what this run spent) and _build_s (what building it cost once)."""
    metrics = {f"time/{entry.stage}_s": spent_s, f"time/{entry.stage}_build_s": entry.build_s}
    tags = {f"cache/{entry.stage}_key": entry.key, f"cache/{entry.stage}_hit": str(entry.hit).lower()}
    return metrics, tags


def train_metrics(train_log: dict, batch_size: int, k: int) -> dict[str, float]:
    """Throughput from the trainer's log history; dev-evaluation cost from the timed evaluations.

    Pure training time is the training loop minus the evaluations inside it; the eval
    fraction divides all dev evaluation time (a final one after the loop included) by it.
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
        "train/texts_per_s": steps * cost.texts_per_step(batch_size, k) / pure_s,
        "train/s_per_step": pure_s / max(steps, 1),
        "train/final_loss": summary["train_loss"],
        "eval/count": len(evals),
        "time/train_pure_s": pure_s,
        "time/eval_in_train_s": eval_s,
        "time/eval_fraction": eval_s / pure_s,
    }


def _log_history(mlflow, train_log: dict) -> None:
    """Training loss and dev metrics, each at the step it was measured."""
    for entry in train_log["log_history"]:
        step = entry.get("step", 0)
        if "loss" in entry:
            mlflow.log_metric("train/loss", entry["loss"], step=step)
        dev = {key.replace("eval_dev_cosine_", "dev/").replace("@", "_at_"): value
               for key, value in entry.items() if key.startswith("eval_dev_cosine_")}
        if "eval_loss" in entry:
            dev["dev/loss"] = entry["eval_loss"]
        if dev:
            mlflow.log_metrics(dev, step=step)


def stage_keys(cfg: DictConfig) -> dict[str, str]:
    """Cache key of each cached stage this config runs (mine only when k > 0)."""
    model_fp = models.model_fingerprint(cfg.model)
    keys = {"split": stage_key("split", split.VERSION,
                               {"data": _cfg(cfg.data), "split": _cfg(cfg.split), "seed": cfg.seed},
                               fingerprint=split.data_fingerprint(cfg.data))}
    if cfg.k > 0:
        # Embeddings per (model, data); the ranking per miner setting, without k: one serves every k.
        keys["embed"] = stage_key("embed", embed.VERSION, {"max_seq_length": cfg.model.max_seq_length,
                                  "batch_size": cfg.miner.batch_size}, [keys["split"]], model_fp)
        keys["mine"] = stage_key("mine", mine.VERSION, mine.ranking_config(cfg.miner), [keys["embed"]])
    keys["base_eval"] = stage_key("base_eval", evaluate.VERSION,
                                  {"test_distractors": cfg.eval.test_distractors, "seed": cfg.seed,
                                   "max_seq_length": cfg.model.max_seq_length,
                                   "query_prompt": cfg.eval.query_prompt,
                                   "corpus_prompt": cfg.eval.corpus_prompt},
                                  [keys["split"]], model_fp)
    return keys


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


def mine_for_k(cfg: DictConfig, get_entry, keys: dict[str, str], train_ds, model):
    """(the k-negative training set, mine/* metrics) from the cached ranking of stage_keys().

    Another miner setting re-ranks the cached embeddings without re-encoding.
    `get_entry(stage, key, build)` is the runner's timed cache lookup.
    """
    def build(out: Path) -> None:
        embedded = get_entry("embed", keys["embed"],
                             lambda d: embed.run(model, train_ds, cfg.miner.batch_size, d))
        mine.rank(cfg.miner, *embed.load(embedded.path), train_ds, model, out)

    entry = get_entry("mine", keys["mine"], build)
    start = time.perf_counter()
    mined, stats = mine.for_k(entry.path, train_ds, cfg.k, cfg.miner, cfg.seed)
    return mined, stats | {"time/mine_cut_s": time.perf_counter() - start}


def run(cfg: DictConfig, tags: dict[str, str]) -> dict:
    """Run the pipeline once; return the run summary (also saved and logged)."""
    import datasets
    import mlflow

    datasets.disable_progress_bars()
    run_dir = Path(cfg.paths.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = StageCache(cfg.paths.cache_dir)
    tags = tags | tracking.environment_tags() | {"preset": cfg.preset}
    with tracking.mlflow_run(cfg.mlflow, tags) as active:
        mlflow.log_params(tracking.flatten(cfg))
        metrics: dict[str, float] = {}
        cache_tags: dict[str, str] = {}
        total_start = time.perf_counter()

        def timed_entry(stage: str, key: str, build) -> Entry:
            start = time.perf_counter()
            entry = cache.get_or_build(stage, key, build)
            m, t = _cache_metrics(entry, time.perf_counter() - start)
            metrics.update(m)
            cache_tags.update(t)
            log.info("%s: %s (%s)", stage, "cache hit" if entry.hit else "built", entry.path)
            return entry

        keys = stage_keys(cfg)
        split_entry = timed_entry("split", keys["split"],
                                  lambda out: split.run(cfg.data, cfg.split, cfg.seed, out))
        splits = split.load(split_entry.path)
        metrics.update(json.loads((split_entry.path / "stats.json").read_text()))

        hw = hardware.resolve(cfg.hardware)
        mlflow.set_tags(hw.tags())
        model = models.load_model(cfg.model, device=hw.model_device)

        if cfg.k > 0:
            train_ds, mine_metrics = mine_for_k(cfg, timed_entry, keys, splits["train"], model)
            metrics.update(mine_metrics)
            metrics["time/mine_s"] += mine_metrics["time/mine_cut_s"]
        else:
            train_ds = splits["train"]
            metrics["time/mine_s"] = 0.0

        # The base model is scored before training changes it; cached per (data, split, model).
        test_corpus = evaluate.distractors(splits["train"], cfg.eval.test_distractors, cfg.seed)
        base_entry = timed_entry("base_eval", keys["base_eval"], lambda out: evaluate.run(
            model, splits["test"], test_corpus, cfg.eval.batch_size, out,
            cfg.eval.query_prompt, cfg.eval.corpus_prompt))
        base = json.loads((base_entry.path / "metrics.json").read_text())

        metrics.update(cost.predict(cfg, model, train_ds))

        start = time.perf_counter()
        dev_evaluator = dev_loss_data = None
        if cfg.eval.cadence != "none" and cfg.eval.kind == "ir":
            dev_evaluator = evaluate.dev_evaluator(cfg.eval, splits["dev"], splits["train"], cfg.seed)
            metrics |= {"eval/dev_queries": len(dev_evaluator.queries),
                        "eval/dev_corpus": len(dev_evaluator.corpus)}
        elif cfg.eval.cadence != "none":
            dev_loss_data = splits["dev"]
            metrics["eval/dev_queries"] = len(dev_loss_data)
        cost.reset_peak_memory(hw.device)
        train_log = train.run(cfg, model, train_ds, dev_evaluator, run_dir, dev_loss_data)
        metrics["time/train_s"] = time.perf_counter() - start
        metrics.update(cost.peak_memory(hw.device))
        metrics.update(train_metrics(train_log, cfg.train.batch_size, cfg.k))
        warning_tags = {f"warning/{name}": text
                        for name, text in eval_cost_warnings(metrics, train_log).items()}
        _log_history(mlflow, train_log)

        start = time.perf_counter()
        test_dir = run_dir / "test"
        test_dir.mkdir(exist_ok=True)
        tuned = evaluate.run(model, splits["test"], test_corpus, cfg.eval.batch_size, test_dir,
                             cfg.eval.query_prompt, cfg.eval.corpus_prompt)
        metrics["time/test_s"] = time.perf_counter() - start
        metrics["time/eval_s"] = metrics["time/test_s"] + metrics["time/base_eval_s"]
        for name in evaluate.METRICS:
            metrics[f"test/{name}"] = tuned[name]
            metrics[f"base/{name}"] = base[name]
            metrics[f"gain/{name}"] = tuned[name] - base[name]
        metrics["test/corpus_size"] = tuned["corpus_size"]
        metrics["test/queries"] = tuned["queries"]
        metrics["time/total_s"] = time.perf_counter() - total_start

        mlflow.log_metrics(metrics)
        mlflow.set_tags(cache_tags | warning_tags | {"model_dir": str(run_dir / "model")})
        summary = {"run_id": active.info.run_id, "experiment_id": active.info.experiment_id,
                   "model_dir": str(run_dir / "model"), "metrics": metrics,
                   "tags": cache_tags | warning_tags}
        (run_dir / "run_summary.json").write_text(json.dumps(summary, indent=1))
        mlflow.log_artifact(str(run_dir / "run_summary.json"))
        if (run_dir / ".hydra").is_dir():
            mlflow.log_artifacts(str(run_dir / ".hydra"), "hydra")
    return summary
