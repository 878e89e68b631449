"""Train stage: fine-tune with SentenceTransformerTrainer and the configured loss.

Returns what the trainer measured (its log history) on disk, and hands each
logged figure to the runner's `on_figures` as training goes (train_report.py);
the runner turns them into MLflow metrics, so this stage never touches MLflow.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pipeline import parallel, progress
from pipeline.losses import build_loss
from pipeline.names import warning
from pipeline.stages import budget, cost, evaluate
from pipeline.stages.calibration import merged
from pipeline.stages.mine import TrainingSet
from pipeline.stages.stage import Context
from pipeline.stages.train_report import step_texts, train_metrics, training_warnings

log = logging.getLogger(__name__)

# eval.cadence -> the trainer's eval_strategy ("final" evaluates once, after training;
# "fraction" is scheduled by eval_schedule.FractionSchedule).
_STRATEGY = {"none": "no", "final": "no", "epoch": "epoch", "steps": "steps", "fraction": "no"}


def training_args(cfg: DictConfig, hardware, out_dir: Path, evaluates: bool):
    """SentenceTransformerTrainingArguments from the train, eval and seed config and the resolved hardware."""
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainingArguments

    strategy = _STRATEGY[cfg.eval.cadence] if evaluates else "no"
    return SentenceTransformerTrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=cfg.train.batch_size,
        per_device_eval_batch_size=cfg.eval.batch_size,
        num_train_epochs=cfg.train.epochs,
        max_steps=cfg.train.max_steps,
        learning_rate=cfg.train.learning_rate,
        warmup_steps=float(cfg.train.warmup_ratio),  # a float below 1 is a ratio of all steps
        seed=cfg.seed,
        data_seed=cfg.seed,
        batch_sampler=cfg.train.batch_sampler,
        eval_strategy=strategy,
        eval_steps=cfg.eval.every if strategy == "steps" else None,
        logging_steps=cfg.train.logging_steps,
        save_strategy="no",
        report_to="none",
        **hardware.trainer_flags(),
        # Under a budget every step is a whole batch (the last, short one of an epoch is left out),
        # so the steps it buys spend what it says.
        dataloader_drop_last=cfg.train.budget is not None,
        disable_tqdm=True,
    )


def quiet_trainer(model, train_dataset, **kwargs):
    """A SentenceTransformerTrainer that prints nothing itself: no raw log dicts on stdout
    (PrinterCallback) and no 'Computing widget examples' bar (the model card gets one example
    here instead of sampling them at init)."""
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainer
    from transformers import PrinterCallback

    first = next(iter(train_dataset.values())) if isinstance(train_dataset, dict) else train_dataset
    model.model_card_data.widget = model.model_card_data.widget or [{"text": first[0]["anchor"]}]
    trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, **kwargs)
    trainer.remove_callback(PrinterCallback)
    return trainer


# train.batch_sampler values that keep repeated texts out of a batch: whether each hashes first.
_NO_DUPLICATES = {"no_duplicates": False, "no_duplicates_hashed": True}


def _no_duplicates_by_texts(twins: dict, hashed: bool = False):
    """The no_duplicates sampler for bank training sets, deciding on each one's twin with the
    negatives as texts (`twins`: source name or None -> that Dataset): it cannot see texts behind
    corpus ids, and a batch must not hold a row whose negative is another row's positive, as in
    live mode. With several sources the trainer names each row's source (dataset_name);
    other datasets (the dev split) are sampled as they are. `hashed`: no_duplicates_hashed (the
    texts' xxhash values, computed once)."""
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    def sampler(dataset, **kwargs):
        if "label" not in dataset.column_names:
            return NoDuplicatesBatchSampler(dataset, precompute_hashes=hashed, **kwargs)
        source = dataset[0].get("dataset_name")  # set by the trainer's transform, not a column
        return NoDuplicatesBatchSampler(twins[source], precompute_hashes=hashed, **kwargs)

    return sampler


def trainer_for(cfg: DictConfig, hardware, model, train_ds, bank, out_dir: Path, dev=None,
                callbacks: tuple = ()):
    """(the SentenceTransformerTrainer, its loss) for a run or plan mode's calibration: one builder.

    `train_ds` is one training set, or {source: training set} for a run of several sources (then
    every batch comes from one source, sentence-transformers' multi-dataset sampler); `bank`
    likewise (mine.Bank, loss.negatives=bank; None otherwise). The loss is losses.build_loss's
    (wrapped in StepEmbeddingLoss where the loss allows); with banks the trainer trains on their
    corpus-id rows, each source's memory bank (and its loss: {source: loss}) starting from its
    bank's vectors, refreshed every loss.bank_refresh_steps (after the callbacks given, inside
    the training loop, so train time includes it).
    """
    import datasets

    from pipeline.losses.memory_bank import BankRefresh, CorpusMemoryBank

    several = isinstance(train_ds, dict)
    sets = train_ds if several else {None: train_ds}
    banks = (bank if several else {None: bank}) if bank is not None else {}
    evaluates = dev is not None and dev.evaluates
    args = training_args(cfg, hardware, out_dir, evaluates)
    every_callback, rows, twins = list(callbacks), {}, {}
    losses: dict[str | None, Any] = {}
    for name, texts in sets.items():
        rows[name], memory = texts, None
        if banks.get(name) is not None:
            source_bank = banks[name]
            memory = CorpusMemoryBank(source_bank.corpus, source_bank.vectors, encode_batch_size=cfg.miner.batch_size,
                                      positives_width=len(source_bank.train_ds[0]["label"]) - cfg.k)
            if cfg.loss.bank_refresh_steps:
                every_callback.append(BankRefresh(memory, cfg.loss.bank_refresh_steps))
            # Online-mined negatives are not known before the step: the sampler keeps repeats of
            # anchors and positives out of a batch, as for k = 0.
            online = cfg.loss.bank_mining == "online"
            twins[name] = texts.select_columns(["anchor", "positive"]) if online else texts
            rows[name] = source_bank.train_ds
        if memory is not None or not losses:
            losses[name] = build_loss(cfg, model, memory)
    if twins and cfg.train.batch_sampler in _NO_DUPLICATES:
        args.batch_sampler = _no_duplicates_by_texts(twins, _NO_DUPLICATES[cfg.train.batch_sampler])
    if several:
        args.multi_dataset_batch_sampler = cfg.train.multi_dataset_sampler
    # One loss for every source, unless each has a bank of its own.
    loss = losses if twins and several else next(iter(losses.values()))
    trainer = quiet_trainer(
        model,
        datasets.DatasetDict(rows) if several else rows[None],
        args=args,
        eval_dataset=dev.loss_data if dev else None,
        loss=loss,
        evaluator=dev.evaluator if dev else None,
        callbacks=every_callback or None,
    )
    return trainer, loss


def wrapped(loss) -> list:
    """The StepEmbeddingLoss modules of a trainer's loss (one, or one per source; none for a loss
    that embeds its own texts)."""
    from pipeline.losses.embedding_modes import StepEmbeddingLoss

    return [part for part in (loss.values() if isinstance(loss, dict) else [loss])
            if isinstance(part, StepEmbeddingLoss)]


def recent(loss) -> dict[str, float]:
    """The per-step figures every source's loss logged since the last call (online mining's)."""
    figures: dict[str, list[float]] = {}
    for part in wrapped(loss):
        for name, value in part.recent().items():
            figures.setdefault(name, []).append(value)
    return {name: sum(values) / len(values) for name, values in figures.items()}


def step_figures(loss) -> dict[str, float]:
    """What the loss measured per training step (step/*, bank/*, over every source's loss);
    {} for a loss that embeds its own texts."""
    from pipeline.losses.embedding_modes import step_metrics

    parts = wrapped(loss)
    return step_metrics(parts) if parts else {}


def chunk_budget_tags(loss) -> dict[str, str]:
    """What loss.chunk_budget=auto chose and why, as tags ({} unless auto had chunks to choose for;
    with a loss per source, the first source's)."""
    autos = [part.embedder.auto for part in wrapped(loss) if part.embedder.auto and part.embedder.length_aware]
    return autos[0].record() if autos else {}


def trainer_sets(trainings: dict[str, TrainingSet]) -> tuple[Any, Any]:
    """(training rows, banks) as the trainer takes them: one source's, or {source: ...} for several."""
    several = len(trainings) > 1
    rows = {name: t.rows for name, t in trainings.items()} if several else next(iter(trainings.values())).rows
    if all(t.bank is None for t in trainings.values()):
        return rows, None
    return rows, {name: t.bank for name, t in trainings.items()} if several else next(iter(trainings.values())).bank


def run(ctx: Context, model, trainings: dict[str, TrainingSet], splits: dict) -> None:
    """The train stage: fine-tune `model` in place on every source's training set (mine.TrainingSet;
    one source: one dataset, as ever), evaluating on the dev splits as eval.* says; what training
    measured on the run's result (cost/* predicted before the first step; train/*, step/*, spent/*,
    time/* after; train/loss and dev/* as logged; chunk_budget/* tags: what loss.chunk_budget=auto chose)."""
    cfg, hardware, result = ctx.cfg, ctx.hardware, ctx.result
    rows = sum(len(training.rows) for training in trainings.values())
    step = per_step_mix(cfg, model, trainings)
    if cfg.train.budget is not None:
        cfg = _within_budget(ctx, model, trainings, step, rows)
    result.add(cost.predict(cfg, rows, step))
    dev = evaluate.dev_setup(cfg.eval, splits, cfg.split.seed)
    result.add(dev.sizes)
    cost.reset_peak_memory(hardware.device)
    start = time.perf_counter()
    train_ds, bank = trainer_sets(trainings)
    with progress.stage("train"):
        train_log = fit(cfg, model, train_ds, hardware, dev, result.run_dir, bank, result.add_step,
                        step.get("cost/bank_refresh_tokens", 0.0), list(trainings) if len(trainings) > 1 else [])
    result.add({"time/train_s": time.perf_counter() - start} | cost.peak_memory(hardware.device) | train_log["step"],
               train_log["chunk_budget"])
    result.add(train_log["spent"], step=train_log["global_step"])  # the end of the spent/* curves
    if cfg.train.budget is not None:
        result.add({"budget/spent": train_log["spent"][f"spent/{cfg.train.budget_unit}"]})
    texts = sum(parallel.all_gather(step_texts(train_log, cfg.train.batch_size, cfg.k)))  # every process's
    figures = train_metrics(train_log, texts)
    result.add(figures, {warning(name): text for name, text in training_warnings(figures, train_log).items()})


def per_step_mix(cfg: DictConfig, model, trainings: dict[str, TrainingSet]) -> dict[str, float]:
    """The cost model's per-step figures: one source's, or with several the mix the multi-dataset
    sampler draws (proportional: by rows; round_robin: one source after another), the banks'
    figures summed (a refresh re-encodes every bank)."""
    each = {name: cost.per_step(cfg, model, t.rows, t.bank) for name, t in trainings.items()}
    if len(each) == 1:
        return next(iter(each.values()))
    weight = {name: len(t.rows) if cfg.train.multi_dataset_sampler == "proportional" else 1.0
              for name, t in trainings.items()}
    total, keys = sum(weight.values()), list(next(iter(each.values())))
    mixed = {key: sum(weight[name] * figures[key] for name, figures in each.items()) / total
             for key in keys if not key.startswith("cost/bank_")}
    return mixed | {key: sum(figures[key] for figures in each.values()) for key in keys if key.startswith("cost/bank_")}


def _within_budget(ctx: Context, model, trainings: dict[str, TrainingSet], step: dict[str, float],
                   rows: int) -> DictConfig:
    """The run's config with train.max_steps set to the steps train.budget buys (budget/* on the result)."""
    cfg = ctx.cfg
    unit = cfg.train.budget_unit
    per_step, per_refresh = (budget.seconds_per_step(cfg, ctx.hardware, model, *trainer_sets(trainings))
                             if unit == "seconds" else (budget.step_cost(cfg, step), budget.refresh_cost(cfg, step)))
    steps = budget.steps_bought(cfg, per_step, per_refresh)
    epochs = steps * cfg.train.batch_size * parallel.world_size() / rows
    ctx.result.add({"budget/amount": cfg.train.budget, "budget/per_step": per_step, "budget/steps": steps,
                    "budget/epochs": epochs} | ({"budget/per_refresh": per_refresh} if per_refresh else {}),
                   {"budget/unit": unit})
    log.info("train.budget=%g %s buys %d steps at %.4g %s each: %.2f epochs of the %d training rows",
             cfg.train.budget, unit, steps, per_step, unit, epochs, rows)
    return merged(cfg, {"train": {"max_steps": steps}})


def fit(cfg: DictConfig, model, train_ds, hardware, dev, out_dir: Path, bank=None, on_figures=None,
        refresh_tokens: float = 0.0, sources: list[str] | tuple = ()) -> dict:
    """Train `model` in place, save it to out_dir/model, return and write train_log.json.

    Dev evaluation runs what `dev` (evaluate.DevSetup) holds: an IR evaluator or the loss on
    the dev split; every evaluation is timed. If the cadence never fired during training
    (e.g. eval.every beyond the last step), it warns and evaluates once at the end. The log's
    `step` holds what the loss measured per step (step_figures).
    `on_figures(step, figures)` gets train/* and dev/* figures as the trainer logs them (dev/<source>/*
    and their macro average dev/* with several `sources`).
    """
    from pipeline.stages.eval_schedule import EvalClock, FractionSchedule, StepsBeyondTraining
    from pipeline.stages.train_report import TrainReport

    schedule = {"fraction": FractionSchedule, "steps": StepsBeyondTraining}.get(cfg.eval.cadence)
    callback = schedule(cfg.eval.every) if dev.evaluates and schedule else None
    spend = budget.Spend(cost.texts_per_step(cfg.train.batch_size, cfg.k), refresh_tokens)
    report = TrainReport(on_figures, lambda: spend.figures() | recent(loss), list(sources))
    trainer, loss = trainer_for(cfg, hardware, model, train_ds, bank, out_dir, dev,
                                tuple(c for c in (callback, spend, report) if c))
    spend.losses = wrapped(loss)
    clock = EvalClock(trainer)
    trainer.train()
    late = getattr(callback, "warning", None)
    warnings = {"eval_cadence": late} if late else {}
    if dev.evaluates and not clock.ran_in_training():
        if cfg.eval.cadence != "final":
            warnings["eval_cadence"] = (f"eval.cadence={cfg.eval.cadence} never fired in the "
                                        f"{trainer.state.global_step} training steps: evaluated once "
                                        "after training instead.")
            log.warning(warnings["eval_cadence"])
        trainer.evaluate()
    result = {"log_history": trainer.state.log_history, "global_step": trainer.state.global_step,
              "dev_evals": clock.evals, "warnings": warnings, "step": step_figures(loss),
              "chunk_budget": chunk_budget_tags(loss),
              "spent": spend.totals() | {"train/epochs": float(trainer.state.epoch or 0.0)}}
    if trainer.is_world_process_zero():  # every process holds the same weights: one saves them
        model.save(str(out_dir / "model"))
        (out_dir / "train_log.json").write_text(json.dumps(result, indent=1))
    return result
