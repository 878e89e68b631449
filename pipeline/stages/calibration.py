"""Calibration: a few real training steps of a run's own trainer and loss, timed.

Plan mode prices a run with it, a seconds budget turns into steps with it, and the benchmarks
time each step-embedding mode with it. Its time is bounded whatever the run's size: a step of
more than CALIBRATION_TOKENS padded tokens is calibrated at a smaller batch (same k, same data,
same step embedding) and the measured seconds are scaled by the padded tokens per step the
run's step would embed.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import TrainerCallback

from pipeline.losses import LOSSES
from pipeline.losses.chunk_budget import TRIAL_STEPS
from pipeline.stages import cost


def merged(cfg: DictConfig, *changes: dict) -> DictConfig:
    """A copy of run config `cfg` with `changes` merged in."""
    out = OmegaConf.merge(cfg, *changes)
    assert isinstance(out, DictConfig)
    return out

# Timed calibration steps, after one untimed warm-up step.
CALIBRATION_STEPS = 3
# Padded tokens one calibration step may embed: a few seconds of MiniLM on a CPU core pair.
CALIBRATION_TOKENS = 8192


class StepTimer(TrainerCallback):
    """Wall seconds of each training step, from its start to its end (callbacks registered after
    this one, e.g. a bank refresh, fall outside), and the CPU seconds this process (all its
    threads) spent in it: on a CPU shared with other jobs, the steadier of the two."""

    def __init__(self):
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():  # GPU work is asynchronous: wait for the step to finish
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self.start)
        self.cpu_seconds.append(time.process_time() - self.cpu_start)


@dataclass
class Calibration:
    """Timed training steps after the warm-up steps, and what the loss measured per step."""

    seconds: list[float]  # wall
    cpu_seconds: list[float]  # this process's CPU time
    step: dict[str, float]  # step/* means over all steps, warm-up included ({} for cached_mnrl, gist)


def calibrate(cfg: DictConfig, hardware, model, train_ds, steps: int = CALIBRATION_STEPS,
              bank=None) -> Calibration:
    """`steps` real training steps of `model` after one warm-up step (and auto's trial steps),
    timed, with the trainer and loss a run builds (train.trainer_for); `bank` (prepare.Bank) in
    bank mode. Bank refreshes are left out of the timed steps: refresh_seconds prices them."""
    from pipeline.stages.train import step_figures, trainer_for

    # loss.chunk_budget=auto times both budgets on its first steps: those warm up too, so the timed
    # steps are at the budget the run will keep.
    warm = 1 + (TRIAL_STEPS if cfg.loss.get("chunk_budget") == "auto" and cfg.loss.get("length_aware") else 0)
    short = merged(cfg, {"train": {"max_steps": steps + warm, "logging_steps": steps + warm + 1},
                         "eval": {"cadence": "none"}}, {"loss": {"bank_refresh_steps": 0}} if bank else {})
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        trainer, loss = trainer_for(short, hardware, model, train_ds, bank, Path(out), callbacks=(timer,))
        trainer.train()
    return Calibration(timer.seconds[warm:], timer.cpu_seconds[warm:], step_figures(loss))


def refresh_seconds(model, corpus: list[str], batch_size: int, sample: int = 256) -> float:
    """Seconds one bank refresh of `corpus` would take: a real refresh of its first `sample` texts,
    timed, scaled to the whole corpus."""
    import numpy as np

    from pipeline.losses.memory_bank import CorpusMemoryBank

    texts = corpus[:sample]
    bank = CorpusMemoryBank(texts, np.zeros((len(texts), model.get_embedding_dimension()), dtype=np.float32),
                            encode_batch_size=batch_size)
    bank.refresh(model)
    return bank.refresh_seconds * len(corpus) / len(texts)


def calibration_batch(cfg: DictConfig, padded_per_step: float) -> int:
    """The batch a calibration step runs at: the run's own, or as much of it as CALIBRATION_TOKENS
    allows (at least 2 rows where other rows are negatives)."""
    batch = cfg.train.batch_size
    if padded_per_step <= CALIBRATION_TOKENS:
        return batch
    smallest = 2 if LOSSES[cfg.loss.name].keys.in_batch else 1
    return min(batch, max(smallest, int(batch * CALIBRATION_TOKENS / padded_per_step)))


def padded_tokens(figures: dict[str, float]) -> float:
    """Padded tokens the run's own step embeds (its step-embedding mode's, else the plain recipe's)."""
    return figures.get("cost/step_tokens_padded", figures["cost/tokens_per_step_padded"])


def estimate(cfg: DictConfig, hardware, model, train_ds, bank, padded_per_step: float) -> tuple[float, str]:
    """(seconds per step, how they were found): measured at the run's batch, or at a smaller
    one and scaled by the padded tokens per step of the run's step embedding."""
    batch = calibration_batch(cfg, padded_per_step)
    if batch == cfg.train.batch_size:
        seconds = calibrate(cfg, hardware, model, train_ds, bank=bank).seconds
        return statistics.median(seconds), f"{len(seconds)} steps at batch {batch}: measured"
    smaller = merged(cfg, {"train": {"batch_size": batch}})
    if "mini_batch_size" in cfg.loss:
        smaller.loss.mini_batch_size = min(cfg.loss.mini_batch_size, batch)
    # With several sources, the first's step stands for the mix (the scale is a ratio of tokens).
    sample, sample_bank = (next(iter(train_ds.values())), next(iter(bank.values())) if bank else None) \
        if isinstance(train_ds, dict) else (train_ds, bank)
    padded = padded_tokens(cost.per_step(smaller, model, sample, sample_bank))
    seconds = calibrate(smaller, hardware, model, train_ds, bank=bank).seconds
    scale = padded_per_step / padded
    return statistics.median(seconds) * scale, (
        f"{len(seconds)} steps at batch {batch} of {cfg.train.batch_size}, scaled x{scale:.1f} by "
        f"padded tokens per step ({padded:,.0f} -> {padded_per_step:,.0f}): estimated")
