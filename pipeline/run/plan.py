"""Plan mode (`plan=true`): price a run before paying for it.

Prints one line per job: which stages would run or hit the cache, the cost
model's figures, and a training-time estimate from a few real training steps on
this hardware. Prepares inputs exactly as a run does (pipeline.run.prepare), but
never mines, never trains the run's model for real, never opens an MLflow run.

Its time is bounded whatever the run's size: a step of more than
CALIBRATION_TOKENS padded tokens is calibrated at a smaller batch (same k, same
data) and the measured seconds are scaled by the cost model's padded tokens per
step, and the line says so.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.run import cost
from pipeline.run.cache import StageCache
from pipeline.run.prepare import prepare, stage_keys
from pipeline.run.result import RunResult

# Timed calibration steps, after one untimed warm-up step.
CALIBRATION_STEPS = 3
# Padded tokens one calibration step may embed: a few seconds of MiniLM on a CPU core pair.
CALIBRATION_TOKENS = 8192


def calibrate(cfg: DictConfig, hardware, model, train_ds, steps: int = CALIBRATION_STEPS) -> list[float]:
    """Seconds of each of `steps` real training steps (after one warm-up step) of `model`."""
    import torch
    from transformers import TrainerCallback

    from pipeline.losses import build_loss
    from pipeline.stages.train import quiet_trainer, training_args

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():  # GPU work is asynchronous: wait for the step to finish
                torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - self.start)

    short = OmegaConf.merge(cfg, {"train": {"max_steps": steps + 1, "logging_steps": steps + 2},
                                  "eval": {"cadence": "none"}})
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        trainer = quiet_trainer(model, train_ds, args=training_args(short, hardware, Path(out), False),
                                loss=build_loss(cfg.loss, model), callbacks=[timer])
        trainer.train()
    return timer.seconds[1:]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def calibration_batch(cfg: DictConfig, padded_per_step: float) -> int:
    """The batch a calibration step runs at: the run's own, or as much of it as CALIBRATION_TOKENS
    allows (at least 2 rows where other rows are negatives)."""
    from pipeline.losses import LOSSES

    batch = cfg.train.batch_size
    if padded_per_step <= CALIBRATION_TOKENS:
        return batch
    smallest = 2 if LOSSES[cfg.loss.name].in_batch else 1
    return min(batch, max(smallest, int(batch * CALIBRATION_TOKENS / padded_per_step)))


def estimate(cfg: DictConfig, hardware, model, train_ds, padded_per_step: float) -> tuple[float, str]:
    """(seconds per step, how they were found): measured at the run's batch, or at a smaller
    one and scaled by the cost model's padded tokens per step."""
    batch = calibration_batch(cfg, padded_per_step)
    if batch == cfg.train.batch_size:
        seconds = calibrate(cfg, hardware, model, train_ds)
        return statistics.median(seconds), f"{len(seconds)} steps at batch {batch}: measured"
    smaller = OmegaConf.merge(cfg, {"train": {"batch_size": batch}})
    if "mini_batch_size" in cfg.loss:
        smaller.loss.mini_batch_size = min(cfg.loss.mini_batch_size, batch)
    _, padded = cost.tokens_per_step(model, train_ds, batch)
    seconds = calibrate(smaller, hardware, model, train_ds)
    scale = padded_per_step / padded
    return statistics.median(seconds) * scale, (
        f"{len(seconds)} steps at batch {batch} of {cfg.train.batch_size}, scaled x{scale:.1f} by "
        f"padded tokens per step ({padded:,.0f} -> {padded_per_step:,.0f}): estimated")


def run(cfg: DictConfig, hardware) -> str:
    """The plan line for config `cfg` (builds the split into the cache if absent: cost needs data)."""
    import datasets

    datasets.disable_progress_bars()
    cache = StageCache(cfg.paths.cache_dir)
    status = {stage: "cached" if cache.lookup(stage, key) else "would run"
              for stage, key in stage_keys(cfg).items()}
    prepared = prepare(cfg, hardware, RunResult(Path(cfg.paths.run_dir)), mine_negatives=False)
    figures = cost.predict(cfg, prepared.model, prepared.train_ds)
    s_per_step, how = estimate(cfg, hardware, prepared.model, prepared.train_ds,
                               figures["cost/tokens_per_step_padded"])
    stages = ", ".join(f"{stage} {state}" for stage, state in status.items())
    return (f"plan k={cfg.k} loss={cfg.loss.name} batch={cfg.train.batch_size} "
            f"model={cfg.model.kind} hardware={hardware.device}/{hardware.precision} | "
            f"stages: {stages}, train would run, test would run | "
            f"per step (predicted): {figures['cost/texts_per_step']:,} texts, "
            f"{figures['cost/tokens_per_step_real']:,.0f} tokens real / "
            f"{figures['cost/tokens_per_step_padded']:,.0f} padded, scores "
            f"{figures['cost/score_rows']:,}x{figures['cost/score_cols']:,} | "
            f"{figures['cost/steps']:,} steps ({figures['cost/steps_per_epoch']:,}/epoch, "
            f"{figures['cost/texts_per_epoch']:,} texts/epoch) | calibration ({prepared.negatives} "
            f"negatives, {how}): {s_per_step:.3g} s/step, training estimate "
            f"{_minutes(s_per_step * figures['cost/steps'])} (dev evaluation not included)")
