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

from omegaconf import DictConfig

from pipeline import parallel, progress
from pipeline.losses import build_loss
from pipeline.names import warning
from pipeline.stages import budget, cost, evaluate
from pipeline.stages.calibration import merged
from pipeline.stages.mine import TrainingSet
from pipeline.stages.stage import Context
from pipeline.stages.train_report import eval_cost_warnings, step_texts, train_metrics

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

    model.model_card_data.widget = model.model_card_data.widget or [{"text": train_dataset[0]["anchor"]}]
    trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, **kwargs)
    trainer.remove_callback(PrinterCallback)
    return trainer


def _no_duplicates_by_texts(texts_ds):
    """The no_duplicates sampler for a bank training set, deciding on `texts_ds` (the same rows with
    the negatives as texts): it cannot see texts behind corpus ids, and a batch must not hold a
    row whose negative is another row's positive, as in live mode. Other datasets (the dev
    split) are sampled as they are."""
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    def sampler(dataset, **kwargs):
        return NoDuplicatesBatchSampler(texts_ds if "label" in dataset.column_names else dataset, **kwargs)

    return sampler


def trainer_for(cfg: DictConfig, hardware, model, train_ds, bank, out_dir: Path, dev=None,
                callbacks: tuple = ()):
    """(the SentenceTransformerTrainer, its loss) for a run or plan mode's calibration: one builder.

    The loss is losses.build_loss's (wrapped in StepEmbeddingLoss where the loss allows). With
    `bank` (prepare.Bank, loss.negatives=bank) the trainer trains on the corpus-id rows, the
    memory bank starts from the bank's vectors and is refreshed every loss.bank_refresh_steps
    (after the callbacks given, inside the training loop, so train time includes it).
    """
    from pipeline.losses.memory_bank import BankRefresh, CorpusMemoryBank

    evaluates = dev is not None and dev.evaluates
    args = training_args(cfg, hardware, out_dir, evaluates)
    every_callback, memory = list(callbacks), None
    if bank is not None:
        label_width = len(bank.train_ds[0]["label"])
        memory = CorpusMemoryBank(bank.corpus, bank.vectors, encode_batch_size=cfg.miner.batch_size,
                                  positives_width=label_width - cfg.k)
        if cfg.loss.bank_refresh_steps:
            every_callback.append(BankRefresh(memory, cfg.loss.bank_refresh_steps))
        if cfg.train.batch_sampler == "no_duplicates":
            # Online-mined negatives are not known before the step: the sampler keeps repeats of
            # anchors and positives out of a batch, as for k = 0.
            online = cfg.loss.bank_mining == "online"
            args.batch_sampler = _no_duplicates_by_texts(train_ds.select_columns(["anchor", "positive"])
                                                         if online else train_ds)
        train_ds = bank.train_ds
    loss = build_loss(cfg, model, memory)
    trainer = quiet_trainer(
        model,
        train_ds,
        args=args,
        eval_dataset=dev.loss_data if dev else None,
        loss=loss,
        evaluator=dev.evaluator if dev else None,
        callbacks=every_callback or None,
    )
    return trainer, loss


def step_figures(loss) -> dict[str, float]:
    """What the loss measured per training step (StepEmbeddingLoss.metrics: step/*, bank/*);
    {} for a loss that embeds its own texts."""
    from pipeline.losses.embedding_modes import StepEmbeddingLoss

    return loss.metrics() if isinstance(loss, StepEmbeddingLoss) else {}


def run(ctx: Context, model, training: TrainingSet, splits) -> None:
    """The train stage: fine-tune `model` in place on `training` (mine.TrainingSet), evaluating on
    the dev split as eval.* says; what training measured on the run's result (cost/* predicted
    before the first step; train/*, step/*, time/* after; train/loss and dev/* as logged)."""
    cfg, hardware, result = ctx.cfg, ctx.hardware, ctx.result
    step = cost.per_step(cfg, model, training.rows, training.bank)
    if cfg.train.budget is not None:
        cfg = _within_budget(ctx, model, training, step)
    result.add(cost.predict(cfg, model, training.rows, training.bank, step))
    dev = evaluate.dev_setup(cfg.eval, splits, cfg.split.seed)
    result.add(dev.sizes)
    cost.reset_peak_memory(hardware.device)
    start = time.perf_counter()
    with progress.stage("train"):
        train_log = fit(cfg, model, training.rows, hardware, dev, result.run_dir, training.bank, result.add_step,
                        step.get("cost/bank_refresh_tokens", 0.0))
    result.add({"time/train_s": time.perf_counter() - start} | cost.peak_memory(hardware.device) | train_log["step"])
    result.add(train_log["spent"], step=train_log["global_step"])  # the end of the spent/* curves
    if cfg.train.budget is not None:
        result.add({"budget/spent": train_log["spent"][f"spent/{cfg.train.budget_unit}"]})
    texts = sum(parallel.all_gather(step_texts(train_log, cfg.train.batch_size, cfg.k)))  # every process's
    figures = train_metrics(train_log, texts)
    result.add(figures, {warning(name): text for name, text in eval_cost_warnings(figures, train_log).items()})


def _within_budget(ctx: Context, model, training: TrainingSet, step: dict[str, float]) -> DictConfig:
    """The run's config with train.max_steps set to the steps train.budget buys (budget/* on the result)."""
    cfg = ctx.cfg
    unit = cfg.train.budget_unit
    per_step = (budget.seconds_per_step(cfg, ctx.hardware, model, training.rows, training.bank) if unit == "seconds"
                else budget.step_cost(cfg, step))
    steps = budget.steps_bought(cfg, per_step)
    epochs = steps * cfg.train.batch_size * parallel.world_size() / len(training.rows)
    ctx.result.add({"budget/amount": cfg.train.budget, "budget/per_step": per_step, "budget/steps": steps,
                    "budget/epochs": epochs}, {"budget/unit": unit})
    log.info("train.budget=%g %s buys %d steps at %.4g %s each: %.2f epochs of the %d training rows",
             cfg.train.budget, unit, steps, per_step, unit, epochs, len(training.rows))
    return merged(cfg, {"train": {"max_steps": steps}})


def fit(cfg: DictConfig, model, train_ds, hardware, dev, out_dir: Path, bank=None, on_figures=None,
        refresh_tokens: float = 0.0) -> dict:
    """Train `model` in place, save it to out_dir/model, return and write train_log.json.

    Dev evaluation runs what `dev` (evaluate.DevSetup) holds: an IR evaluator or the loss on
    the dev split; every evaluation is timed. If the cadence never fired during training
    (e.g. eval.every beyond the last step), it warns and evaluates once at the end. The log's
    `step` holds what the loss measured per step (step_figures).
    `on_figures(step, figures)` gets train/* and dev/* figures as the trainer logs them.
    """
    from pipeline.stages.eval_schedule import EvalClock, FractionSchedule, StepsBeyondTraining
    from pipeline.stages.train_report import TrainReport

    schedule = {"fraction": FractionSchedule, "steps": StepsBeyondTraining}.get(cfg.eval.cadence)
    callback = schedule(cfg.eval.every) if dev.evaluates and schedule else None
    spend = budget.Spend(cost.texts_per_step(cfg.train.batch_size, cfg.k), refresh_tokens)
    report = TrainReport(on_figures, lambda: spend.figures() | (loss.recent() if hasattr(loss, "recent") else {}))
    trainer, loss = trainer_for(cfg, hardware, model, train_ds, bank, out_dir, dev,
                                tuple(c for c in (callback, spend, report) if c))
    spend.loss = loss
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
              "spent": spend.totals() | {"train/epochs": float(trainer.state.epoch or 0.0)}}
    if trainer.is_world_process_zero():  # every process holds the same weights: one saves them
        model.save(str(out_dir / "model"))
        (out_dir / "train_log.json").write_text(json.dumps(result, indent=1))
    return result
