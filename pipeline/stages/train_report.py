"""Training as the user and the tracker see it while it runs.

The trainer's own PrinterCallback prints raw log dicts to stdout; this callback
replaces it: progress with the latest loss and an ETA, one line per dev
evaluation, and every figure the trainer logs handed to `on_figures(step,
figures)` the moment it is logged (the runner passes RunResult.add_step, so the
curves reach MLflow during training; this stage never sees MLflow).
"""

from __future__ import annotations

import logging
from typing import Callable

from transformers import TrainerCallback

from pipeline.progress import Progress

log = logging.getLogger(__name__)
_DEV_PREFIX = "eval_dev_cosine_"
_TRAIN_KEYS = ("loss", "grad_norm", "learning_rate")


def logged_figures(logs: dict) -> dict[str, float]:
    """train/loss, train/grad_norm, train/learning_rate and dev/* from one trainer log entry
    ('@' becomes '_at_': MLflow refuses it in names)."""
    figures = {f"train/{key}": float(logs[key]) for key in _TRAIN_KEYS if key in logs}
    figures |= {"dev/" + key[len(_DEV_PREFIX):].replace("@", "_at_"): float(value)
                for key, value in logs.items() if key.startswith(_DEV_PREFIX)}
    if "eval_loss" in logs:
        figures["dev/loss"] = float(logs["eval_loss"])
    return figures


def _dev_line(step: int, figures: dict[str, float]) -> str | None:
    shown = {"nDCG@10": "dev/ndcg_at_10", "MRR@10": "dev/mrr_at_10", "R@1": "dev/recall_at_1",
             "loss": "dev/loss"}
    parts = [f"{label} {figures[key]:.4f}" for label, key in shown.items() if key in figures]
    return f"dev @ step {step}: {', '.join(parts)}" if parts else None


class TrainReport(TrainerCallback):
    """Progress over the training steps, dev lines, and each logged figure passed on as it comes."""

    def __init__(self, on_figures: Callable[[int, dict[str, float]], None] | None = None):
        self.on_figures = on_figures
        self.progress: Progress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress = Progress(state.max_steps, "train", "step")

    def on_step_end(self, args, state, control, **kwargs):
        self.progress.update()

    def on_log(self, args, state, control, logs=None, **kwargs):
        figures = logged_figures(logs or {})
        if not figures:
            return
        if self.on_figures is not None:
            self.on_figures(state.global_step, figures)
        if "train/loss" in figures and self.progress is not None:
            self.progress.note(loss=figures["train/loss"])
        line = _dev_line(state.global_step, figures)
        if line:
            log.info(line)

    def on_train_end(self, args, state, control, **kwargs):
        self.progress.close()
