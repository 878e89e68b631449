"""Plan mode (`plan=true`): price a run before paying for it.

Prints one line per job: which stages would run or hit the cache, the cost
model's figures, and a training-time estimate from a few real training steps on
this hardware. Never trains the run's model for real, never opens an MLflow run.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline import cost, hardware, mine, models, runner, split
from pipeline.cache import StageCache

# Timed calibration steps, after one untimed warm-up step.
CALIBRATION_STEPS = 3


def stand_in_negatives(train_ds, k: int, seed: int):
    """(anchor, positive, negative_1..k) with negatives drawn at random from other rows' positives.

    Plan mode and the benchmark use these when no mined set is cached: the miner picks its
    negatives from the same passages, so the texts and tokens per step match a mined run's."""
    import datasets

    positives = train_ds["positive"]
    rng = random.Random(seed)
    # Sampling from n - 1 slots and shifting those at or past the row's own index skips its positive.
    picks = [[positives[j + (j >= row)] for j in rng.sample(range(len(positives) - 1), k)]
             for row in range(len(positives))]
    negatives = {f"negative_{i + 1}": [pick[i] for pick in picks] for i in range(k)}
    return datasets.Dataset.from_dict({"anchor": train_ds["anchor"], "positive": positives} | negatives)


def calibrate(cfg: DictConfig, model, train_ds, steps: int = CALIBRATION_STEPS) -> list[float]:
    """Seconds of each of `steps` real training steps (after one warm-up step) of `model`."""
    import torch
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainer
    from transformers import TrainerCallback

    from pipeline.losses import build_loss
    from pipeline.train import training_args

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
        trainer = SentenceTransformerTrainer(model=model, args=training_args(short, Path(out), False),
                                             train_dataset=train_ds, loss=build_loss(cfg.loss, model),
                                             callbacks=[timer])
        trainer.train()
    return timer.seconds[1:]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def run(cfg: DictConfig) -> str:
    """The plan line for config `cfg` (builds the split into the cache if absent: cost needs data)."""
    import datasets

    datasets.disable_progress_bars()
    hw = hardware.resolve(cfg.hardware)
    cache = StageCache(cfg.paths.cache_dir)
    keys = runner.stage_keys(cfg)
    status = {stage: "cached" if cache.lookup(stage, key) else "would run" for stage, key in keys.items()}
    split_entry = cache.get_or_build("split", keys["split"],
                                     lambda out: split.run(cfg.data, cfg.split, cfg.seed, out))
    train_ds = split.load(split_entry.path)["train"]
    mined = cache.lookup("mine", keys["mine"]) if cfg.k > 0 else None
    negatives = "no"
    if mined:
        train_ds, negatives = mine.for_k(mined.path, train_ds, cfg.k, cfg.miner, cfg.seed)[0], "mined"
    elif cfg.k > 0:
        train_ds, negatives = stand_in_negatives(train_ds, cfg.k, cfg.seed), "stand-in"
    model = models.load_model(cfg.model, device=hw.model_device)
    figures = cost.predict(cfg, model, train_ds)
    seconds = calibrate(cfg, model, train_ds)
    s_per_step = statistics.median(seconds)
    stages = ", ".join(f"{stage} {state}" for stage, state in status.items())
    return (f"plan k={cfg.k} loss={cfg.loss.name} batch={cfg.train.batch_size} "
            f"model={cfg.model.kind} hardware={hw.device}/{hw.precision} | "
            f"stages: {stages}, train would run, test would run | "
            f"per step (predicted): {figures['cost/texts_per_step']:,} texts, "
            f"{figures['cost/tokens_per_step_real']:,.0f} tokens real / "
            f"{figures['cost/tokens_per_step_padded']:,.0f} padded, scores "
            f"{figures['cost/score_rows']:,}x{figures['cost/score_cols']:,} | "
            f"{figures['cost/steps']:,} steps ({figures['cost/steps_per_epoch']:,}/epoch, "
            f"{figures['cost/texts_per_epoch']:,} texts/epoch) | calibration ({len(seconds)} steps, "
            f"{negatives} negatives): {s_per_step:.3g} s/step measured, training estimate "
            f"{_minutes(s_per_step * figures['cost/steps'])} (dev evaluation not included)")
