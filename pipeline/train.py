"""Train stage: fine-tune with SentenceTransformerTrainer and the configured loss.

Returns what the trainer measured (its log history) on disk; the runner turns
that into MLflow metrics, so this stage never touches MLflow itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from pipeline.hardware import resolve as resolve_hardware
from pipeline.losses import build_loss

# eval.cadence -> the trainer's eval_strategy ("final" evaluates once, after training).
_STRATEGY = {"none": "no", "final": "no", "epoch": "epoch", "steps": "steps", "fraction": "steps"}


def training_args(cfg: DictConfig, out_dir: Path, evaluates: bool):
    """SentenceTransformerTrainingArguments from the train, eval, hardware and seed config."""
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
        **resolve_hardware(cfg.hardware).trainer_flags(),
        disable_tqdm=True,
    )


def run(cfg: DictConfig, model, train_ds, dev_evaluator, out_dir: Path) -> dict:
    """Train `model` in place, save it to out_dir/model, return and write train_log.json."""
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainer

    evaluates = dev_evaluator is not None and cfg.eval.cadence != "none"
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training_args(cfg, out_dir, evaluates),
        train_dataset=train_ds,
        loss=build_loss(cfg.loss, model),
        evaluator=dev_evaluator if evaluates else None,
    )
    trainer.train()
    if evaluates and cfg.eval.cadence == "final":
        trainer.evaluate()
    model.save(str(out_dir / "model"))
    log = {"log_history": trainer.state.log_history, "global_step": trainer.state.global_step}
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=1))
    return log
