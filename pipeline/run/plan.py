"""Plan mode (`plan=true`): price a run before paying for it.

Prints one line per job: which stages would run or hit the cache, the cost
model's figures, and a training-time estimate from a few real training steps on
this hardware. Prepares inputs exactly as a run does (pipeline.run.prepare), but
never mines, never trains the run's model for real, never opens an MLflow run.
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


def calibrate(cfg: DictConfig, hardware, model, train_ds, steps: int = CALIBRATION_STEPS) -> list[float]:
    """Seconds of each of `steps` real training steps (after one warm-up step) of `model`."""
    import torch
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainer
    from transformers import TrainerCallback

    from pipeline.losses import build_loss
    from pipeline.stages.train import training_args

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
        trainer = SentenceTransformerTrainer(model=model, args=training_args(short, hardware, Path(out), False),
                                             train_dataset=train_ds, loss=build_loss(cfg.loss, model),
                                             callbacks=[timer])
        trainer.train()
    return timer.seconds[1:]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def run(cfg: DictConfig, hardware) -> str:
    """The plan line for config `cfg` (builds the split into the cache if absent: cost needs data)."""
    import datasets

    datasets.disable_progress_bars()
    cache = StageCache(cfg.paths.cache_dir)
    status = {stage: "cached" if cache.lookup(stage, key) else "would run"
              for stage, key in stage_keys(cfg).items()}
    prepared = prepare(cfg, hardware, RunResult(Path(cfg.paths.run_dir)), mine_negatives=False)
    figures = cost.predict(cfg, prepared.model, prepared.train_ds)
    seconds = calibrate(cfg, hardware, prepared.model, prepared.train_ds)
    s_per_step = statistics.median(seconds)
    stages = ", ".join(f"{stage} {state}" for stage, state in status.items())
    return (f"plan k={cfg.k} loss={cfg.loss.name} batch={cfg.train.batch_size} "
            f"model={cfg.model.kind} hardware={hardware.device}/{hardware.precision} | "
            f"stages: {stages}, train would run, test would run | "
            f"per step (predicted): {figures['cost/texts_per_step']:,} texts, "
            f"{figures['cost/tokens_per_step_real']:,.0f} tokens real / "
            f"{figures['cost/tokens_per_step_padded']:,.0f} padded, scores "
            f"{figures['cost/score_rows']:,}x{figures['cost/score_cols']:,} | "
            f"{figures['cost/steps']:,} steps ({figures['cost/steps_per_epoch']:,}/epoch, "
            f"{figures['cost/texts_per_epoch']:,} texts/epoch) | calibration ({len(seconds)} steps, "
            f"{prepared.negatives} negatives): {s_per_step:.3g} s/step measured, training estimate "
            f"{_minutes(s_per_step * figures['cost/steps'])} (dev evaluation not included)")
