"""Train stage: fine-tune with SentenceTransformerTrainer and the configured loss.

Returns what the trainer measured (its log history) on disk; the runner turns
that into MLflow metrics, so this stage never touches MLflow itself.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from pipeline.losses import build_loss

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
        disable_tqdm=True,
    )


def run(cfg: DictConfig, model, train_ds, hardware, dev, out_dir: Path) -> dict:
    """Train `model` in place, save it to out_dir/model, return and write train_log.json.

    Dev evaluation runs what `dev` (evaluate.DevSetup) holds: an IR evaluator or the loss on
    the dev split; every evaluation is timed. If the cadence never fired during training
    (e.g. eval.every beyond the last step), it warns and evaluates once at the end.
    """
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainer

    from pipeline.stages.eval_schedule import EvalClock, FractionSchedule, StepsBeyondTraining

    evaluates = dev.evaluates
    schedule = {"fraction": FractionSchedule, "steps": StepsBeyondTraining}.get(cfg.eval.cadence)
    callback = schedule(cfg.eval.every) if evaluates and schedule else None
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training_args(cfg, hardware, out_dir, evaluates),
        train_dataset=train_ds,
        eval_dataset=dev.loss_data,
        loss=build_loss(cfg.loss, model),
        evaluator=dev.evaluator,
        callbacks=[callback] if callback else None,
    )
    clock = EvalClock(trainer)
    trainer.train()
    warnings = {"eval_cadence": callback.warning} if callback and callback.warning else {}
    if evaluates and not clock.ran_in_training():
        if cfg.eval.cadence != "final":
            warnings["eval_cadence"] = (f"eval.cadence={cfg.eval.cadence} never fired in the "
                                        f"{trainer.state.global_step} training steps: evaluated once "
                                        "after training instead.")
            log.warning(warnings["eval_cadence"])
        trainer.evaluate()
    result = {"log_history": trainer.state.log_history, "global_step": trainer.state.global_step,
              "dev_evals": clock.evals, "warnings": warnings}
    if trainer.is_world_process_zero():  # every process holds the same weights: one saves them
        model.save(str(out_dir / "model"))
        (out_dir / "train_log.json").write_text(json.dumps(result, indent=1))
    return result
