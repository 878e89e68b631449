"""Training as the user and the tracker see it while it runs.

The trainer's own PrinterCallback prints raw log dicts to stdout; this callback
replaces it: progress with the latest loss and an ETA, one line per dev
evaluation, and every figure the trainer logs handed to `on_figures(step,
figures)` the moment it is logged (the train stage passes RunResult.add_step, so the
curves reach MLflow during training; this stage never sees MLflow).
"""

from __future__ import annotations

import logging
import math
from typing import Callable

from transformers import TrainerCallback

from pipeline.progress import Progress
from pipeline.stages import cost

log = logging.getLogger(__name__)
_DEV_PREFIX = "eval_dev_cosine_"
_TRAIN_KEYS = ("loss", "grad_norm", "learning_rate")


def logged_figures(logs: dict, sources: list[str] | tuple = ()) -> dict[str, float]:
    """train/loss, train/grad_norm, train/learning_rate and dev/* from one trainer log entry
    ('@' becomes '_at_': MLflow refuses it in names). With several `sources` the dev figures are
    per source (dev/<source>/*, from the evaluators dev_<source> or the dev losses eval_<source>_loss)
    and dev/* is their macro average."""
    figures = {f"train/{key}": float(logs[key]) for key in _TRAIN_KEYS if key in logs}
    if not sources:
        figures |= {"dev/" + key[len(_DEV_PREFIX):].replace("@", "_at_"): float(value)
                    for key, value in logs.items() if key.startswith(_DEV_PREFIX)}
        if "eval_loss" in logs:
            figures["dev/loss"] = float(logs["eval_loss"])
        return figures
    per_source: dict[str, list[float]] = {}
    for source in sources:
        prefix = f"eval_dev_{source}_cosine_"
        found = {key[len(prefix):].replace("@", "_at_"): float(value) for key, value in logs.items()
                 if key.startswith(prefix)}
        if f"eval_{source}_loss" in logs:
            found["loss"] = float(logs[f"eval_{source}_loss"])
        for metric, value in found.items():
            figures[f"dev/{source}/{metric}"] = value
            per_source.setdefault(metric, []).append(value)
    figures |= {f"dev/{metric}": sum(values) / len(values) for metric, values in per_source.items()
                if len(values) == len(sources)}
    return figures


def _dev_line(step: int, figures: dict[str, float]) -> str | None:
    shown = {"nDCG@10": "dev/ndcg_at_10", "MRR@10": "dev/mrr_at_10", "R@1": "dev/recall_at_1",
             "loss": "dev/loss"}
    parts = [f"{label} {figures[key]:.4f}" for label, key in shown.items() if key in figures]
    return f"dev @ step {step}: {', '.join(parts)}" if parts else None


class TrainReport(TrainerCallback):
    """Progress over the training steps, dev lines, and each logged figure passed on as it comes,
    with what `extra()` adds at that step (the compute spent so far, pipeline.stages.budget.Spend,
    so every dev evaluation can be drawn against compute; an online miner's per-step figures)."""

    def __init__(self, on_figures: Callable[[int, dict[str, float]], None] | None = None,
                 extra: Callable[[], dict[str, float]] | None = None, sources: list[str] | tuple = ()):
        self.on_figures = on_figures
        self.extra = extra
        self.sources = list(sources)
        self.progress: Progress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress = Progress(state.max_steps, "train", "step")

    def on_step_end(self, args, state, control, **kwargs):
        self.progress.update()

    def on_log(self, args, state, control, logs=None, **kwargs):
        figures = logged_figures(logs or {}, self.sources)
        if not figures:
            return
        if self.extra is not None:
            figures |= self.extra()
        if self.on_figures is not None:
            self.on_figures(state.global_step, figures)
        if "train/loss" in figures and self.progress is not None:
            self.progress.note(loss=figures["train/loss"])
        line = _dev_line(state.global_step, figures)
        if line:
            log.info(line)

    def on_train_end(self, args, state, control, **kwargs):
        self.progress.close()


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


# A last logged train loss this many times the first (or 1, whichever is more) is a run that diverged;
# so is any loss above _EXPLODED: no contrastive or triplet loss of a model that learns gets near it.
_DIVERGED_RATIO = 10.0
_EXPLODED = 1e6


def _divergence(history: list[dict]) -> str | None:
    """Why training diverged (a loss not finite or exploded, or ending far above where it began), or
    None: a learning rate or loss.scale too large trains to nothing while the run still ends FINISHED."""
    losses = [float(entry["loss"]) for entry in history if "loss" in entry]
    if not losses:
        return None
    first, last = losses[0], losses[-1]
    sane = all(math.isfinite(loss) and loss <= _EXPLODED for loss in losses)
    if sane and last <= _DIVERGED_RATIO * max(first, 1.0):
        return None
    return (f"the training loss diverged: {first:.4g} at the first log, {last:.4g} at the last; lower "
            "train.learning_rate (or loss.scale), or raise train.warmup_ratio. The tuned model is not worth "
            "comparing.")


def training_warnings(metrics: dict, train_log: dict) -> dict[str, str]:
    """Warnings worth a tag: the train stage's own, a loss that diverged, and dev evaluation costing
    more than training."""
    warnings = dict(train_log["warnings"])
    diverged = _divergence(train_log["log_history"])
    if diverged:
        warnings["loss_diverged"] = diverged
        log.warning(diverged)
    if metrics["time/eval_fraction"] > 1:
        warnings["eval_dominates"] = (
            f"dev evaluation took {metrics['time/eval_in_train_s']:.1f} s, "
            f"{metrics['time/eval_fraction']:.1f}x the pure training time: evaluate less often "
            "(eval.cadence, eval.every), cap the dev set (split.max_dev, eval.dev_max_corpus) "
            "or use eval.kind=loss.")
        log.warning(warnings["eval_dominates"])
    return warnings
