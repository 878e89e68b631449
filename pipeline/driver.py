"""The pipeline: split -> mine -> base eval -> train -> test.

Each stage is a function of (its config, upstream outputs) -> outputs, its figures going onto
the run's result as they are measured (the recorder in tracking/ passes them on to MLflow; no
stage knows of it). A run's data is one source or several (one per language or domain): each
is split, mined, and scored on its own, and one model trains on all of them. Every process of a
multi-process run runs this same code (pipeline.parallel). Plan mode runs the same stages up to
training, never mining or scoring, and prices the training instead of running it.
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from pipeline import parallel
from pipeline import plan as pricing
from pipeline.result import RunResult
from pipeline.stages import evaluate, mine, models, split, train
from pipeline.stages.stage import Context, roll_up


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
    parts = ctx.sources()  # one Context per data source: a run of one source has just itself
    splits, model, trainings = prepare(ctx, parts)
    if plan:
        return pricing.line(ctx, model, trainings)
    tests = evaluate.held_out(parts, splits)
    bases = {name: evaluate.base(part, model, tests[name]) for name, part in parts.items()}
    roll_up(ctx, parts, ("split", "mine", "embed", "base_eval"))  # the run's time and hit per stage
    train.run(ctx, model, trainings, splits)
    evaluate.tested(ctx, parts, model, tests, bases)
    result.add({"time/total_s": time.perf_counter() - start})
    return None


def prepare(ctx: Context, parts: dict[str, Context] | None = None):
    """(splits, base model, mine.TrainingSet) per source: everything training needs (the
    benchmarks use it too)."""
    parts = parts or ctx.sources()
    splits = {}
    for name, part in parts.items():
        with part.naming_source():
            splits[name] = split.run(part)
            split.check_training_rows(part.cfg, splits[name]["train"])
    model = models.base(ctx, parts, splits)
    trainings = {}
    for name, part in parts.items():
        with part.naming_source():
            trainings[name] = mine.run(part, splits[name]["train"], model)
    return splits, model, trainings


def _world_figures(cfg: DictConfig) -> tuple[dict, dict]:
    """How many processes trained, on what, and the batch they made together."""
    world = parallel.world_size()
    return ({"dist/world_size": world, "train/batch_per_device": cfg.train.batch_size,
             "train/global_batch": cfg.train.batch_size * world},
            {"dist/world_size": str(world), "dist/backend": parallel.backend(), "dist/launcher": parallel.launcher()})
