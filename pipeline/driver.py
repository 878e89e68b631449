"""The pipeline: split -> mine -> base eval -> train -> test.

Each stage is a function of (its config, upstream outputs) -> outputs, its figures going onto
the run's result as they are measured (the recorder in tracking/ passes them on to MLflow; no
stage knows of it). Every process of a multi-process run runs this same code (pipeline.parallel).
Plan mode runs the same stages up to training, never mining or scoring, and prices the training
instead of running it.
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from pipeline import parallel
from pipeline import plan as pricing
from pipeline.result import RunResult
from pipeline.stages import evaluate, mine, models, split, train
from pipeline.stages.stage import Context


def run(cfg: DictConfig, hardware, result: RunResult, plan: bool = False) -> str | None:
    """Run the pipeline for config `cfg` on the resolved `hardware`, figures onto `result`; with
    `plan`, return the plan line instead of training."""
    import datasets

    datasets.disable_progress_bars()
    ctx = Context(cfg, hardware, result, plan)
    if parallel.is_main() and not plan:
        result.run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result.add(*_world_figures(cfg))
    result.add(tags=hardware.tags())
    splits, model, training = prepare(ctx)
    if plan:
        return pricing.line(ctx, model, training)
    test = evaluate.test_set(ctx, splits)
    base = evaluate.base(ctx, model, test)
    train.run(ctx, model, training, splits)
    evaluate.tuned(ctx, model, test, base)
    result.add({"time/total_s": time.perf_counter() - start})
    return None


def prepare(ctx: Context):
    """(splits, base model, mine.TrainingSet): everything training needs (the benchmarks use it too)."""
    splits = split.run(ctx)
    model = models.load_model(ctx.cfg.model, device=ctx.hardware.model_device)
    return splits, model, mine.run(ctx, splits["train"], model)


def _world_figures(cfg: DictConfig) -> tuple[dict, dict]:
    """How many processes trained, on what, and the batch they made together."""
    world = parallel.world_size()
    return ({"dist/world_size": world, "train/batch_per_device": cfg.train.batch_size,
             "train/global_batch": cfg.train.batch_size * world},
            {"dist/world_size": str(world), "dist/backend": parallel.backend(), "dist/launcher": parallel.launcher()})
