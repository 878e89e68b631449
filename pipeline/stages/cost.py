"""Cost model: what a training step embeds and scores, predicted before training.

With batch B and k hard negatives the plain recipe's step embeds B anchors, B
positives and B*k negatives; what it costs follows tokens (and padding) more than
texts, so token counts come from tokenizing the training data the way the trainer
batches it. What this run's step embeds instead (loss.negatives, length_aware,
dedupe) comes from the run's own StepEmbedder, fed those batches. After training, peak memory
is measured here too; s/step and texts/s come from the trainer's own log
(pipeline.stages.train_report.train_metrics).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from pipeline import parallel
from pipeline.losses import LOSSES, negatives_mode
from pipeline.losses.chunk_budget import planned
from pipeline.losses.step_embedding import StepCounts, StepEmbedder, collate

# Token counts are averaged over the first batches, up to about this many texts.
TOKEN_SAMPLE_TEXTS = 20_000


def texts_per_step(batch_size: int, k: int) -> int:
    """Anchors, positives and k negatives per row: B * (2 + k)."""
    return batch_size * (2 + k)


def total_steps(rows: int, train: DictConfig, world_size: int = 1) -> tuple[int, int]:
    """(steps per epoch, steps this run trains): max_steps when set, else epochs of batches;
    each of world_size processes takes its own batch per step."""
    per_epoch = math.ceil(rows / (train.batch_size * world_size))
    return per_epoch, train.max_steps if train.max_steps > 0 else math.ceil(per_epoch * train.epochs)


class _ZeroEncoder(nn.Module):
    """Stands in for the model: a zero vector per text it is fed. StepEmbedder then decides, with
    its own chunking and dedupe, what a step would feed the real model, and counts it."""

    def forward(self, features: dict) -> dict:
        rows = len(features["offsets"]) if "offsets" in features else len(features["input_ids"])
        return {"sentence_embedding": torch.zeros(rows, 1)}


def step_counts(model, train_ds, batch_size: int, embedders: dict[str, tuple]) -> dict[str, StepCounts]:
    """Mean StepCounts per step over the first batches of `train_ds` (anchor, positive,
    negative_1..k texts), for each (StepEmbedder, negatives mode) of `embedders`, by name.

    Each batch is tokenized as the trainer does (model.preprocess per column; each distinct text
    once, since a row's negatives are mostly other rows' positives, then collated); the embedder
    receives the columns a step of that mode embeds (live: all; frozen: the negatives without
    gradients; bank: anchors and positives only). The plain recipe is an embedder with every
    option off: sentence-transformers' embed_columns, anchors padded alone, candidates together."""
    columns = train_ds.column_names
    batches = max(1, min(math.ceil(len(train_ds) / batch_size),
                         TOKEN_SAMPLE_TEXTS // (batch_size * len(columns))))
    stand_in = _ZeroEncoder()
    totals = {name: StepCounts() for name in embedders}
    tokenized: dict[str, dict] = {}
    for start in range(0, batches * batch_size, batch_size):
        rows = train_ds[start:start + batch_size]
        features = []
        for column in columns:
            for text in rows[column]:
                if text not in tokenized:
                    tokenized[text] = model.preprocess([text])
            features.append(collate([tokenized[text] for text in rows[column]]))
        for name, (embedder, negatives) in embedders.items():
            live, frozen = {"live": (features, []), "frozen": (features[:2], features[2:]),
                            "bank": (features[:2], [])}[negatives]
            embedder.embed(stand_in, live, frozen)
            totals[name] += embedder.counts.last
    return {name: StepCounts(**{key: value / batches for key, value in asdict(total).items()})
            for name, total in totals.items()}


def tokens_per_step(model, train_ds, batch_size: int) -> tuple[float, float]:
    """Mean (real, padded) tokens per step of the plain recipe over the first batches of `train_ds`:
    the anchor column is its own forward pass, padded to its longest text; the candidate columns
    (positive, negatives) are merged into one, padded to the longest of them (embed_columns).
    StaticEmbedding's flat token stream pads nothing."""
    plain = step_counts(model, train_ds, batch_size, {"plain": (StepEmbedder(), "live")})["plain"]
    return plain.tokens_real, plain.tokens_padded


def bank_refreshes(steps: int, every: int) -> int:
    """Refreshes in a run of `steps` steps, one after every `every` steps but the last (BankRefresh)."""
    return (steps - 1) // every if every else 0


def corpus_tokens(model, corpus: list[str], batch_size: int) -> int:
    """Padded tokens of one encode of `corpus` (a bank refresh): batches of similar length, as
    pipeline.parallel.batches forms them, each padded to its longest text."""
    from pipeline import parallel

    total = 0
    for batch in parallel.batches(corpus, batch_size):
        features = model.preprocess([corpus[i] for i in batch])
        mask = features.get("attention_mask")
        total += int(mask.numel()) if mask is not None and mask.ndim == 2 else int(features["input_ids"].numel())
    return total


def per_step(cfg: DictConfig, model, train_ds, bank=None) -> dict[str, float]:
    """What one training step of `model` on `train_ds` (texts: anchor, positive, negatives) with
    config `cfg` embeds and scores, per process (cost/* figures that do not depend on the step
    count): the plain recipe's texts and tokens, and with a wrapped loss this run's own
    (cost/step_*: what its loss.negatives, length_aware and dedupe make a step embed, the
    predicted counterparts of the measured step/*); in bank mode the bank's corpus and the
    padded tokens of one refresh."""
    batch, k, world = cfg.train.batch_size, cfg.k, parallel.world_size()
    rows, cols = LOSSES[cfg.loss.name].score_shape(batch, k, world if cfg.loss.get("gather_across_devices") else 1,
                                                   cfg.loss.get("directions", ()))
    mode = negatives_mode(cfg)
    embedders = {"plain": (StepEmbedder(), "live")}
    if mode is not None:
        budget = planned(cfg.loss.chunk_budget, cfg.model.max_seq_length, model.device.type)
        embedders["run"] = (StepEmbedder(cfg.loss.length_aware, cfg.loss.dedupe, budget), mode)
    counts = step_counts(model, train_ds, batch, embedders)
    figures: dict[str, float] = {
        "cost/texts_per_step": texts_per_step(batch, k),
        "cost/tokens_per_step_real": counts["plain"].tokens_real,
        "cost/tokens_per_step_padded": counts["plain"].tokens_padded,
        "cost/score_rows": rows,
        "cost/score_cols": cols,
    }
    if mode is not None:
        run = counts["run"]
        figures |= {"cost/step_texts_with_grad": run.texts_with_grad,
                    "cost/step_texts_without_grad": run.texts_without_grad,
                    "cost/step_tokens_real": run.tokens_real, "cost/step_tokens_padded": run.tokens_padded,
                    "cost/step_tokens_padded_with_grad": run.tokens_padded_with_grad}
    if mode == "bank" and bank is not None:
        figures["cost/bank_corpus"] = len(bank.corpus)
        if cfg.loss.bank_refresh_steps:
            figures["cost/bank_refresh_tokens"] = corpus_tokens(model, bank.corpus, cfg.miner.batch_size)
    return figures


def predict(cfg: DictConfig, rows: int, step: dict[str, float]) -> dict[str, float]:
    """The cost/* figures of training on `rows` training rows with config `cfg`: what a step costs
    (`step`: per_step's figures) and what the whole run does (its steps per epoch and steps,
    texts and tokens per epoch, a bank's refreshes)."""
    per_epoch, steps = total_steps(rows, cfg.train, parallel.world_size())
    figures = dict(step) | {
        "cost/steps_per_epoch": per_epoch,
        "cost/steps": steps,
        "cost/texts_per_epoch": rows * (2 + cfg.k),
        "cost/tokens_per_epoch_real": step["cost/tokens_per_step_real"] * per_epoch,
        "cost/tokens_per_epoch_padded": step["cost/tokens_per_step_padded"] * per_epoch,
    }
    if "cost/bank_corpus" in step:
        refreshes = bank_refreshes(steps, cfg.loss.bank_refresh_steps)
        figures |= {"cost/bank_refreshes": refreshes,
                    "cost/bank_texts_per_step": refreshes * step["cost/bank_corpus"] / max(steps, 1)}
    return figures


_PROC = Path("/proc/self")


def reset_peak_memory(device: str) -> None:
    """Start peak-memory measurement here: the GPU's max-allocated counter, and the kernel's
    peak-RSS counter of this process (Linux: writing 5 to clear_refs resets VmHWM)."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if (_PROC / "clear_refs").exists():
        (_PROC / "clear_refs").write_text("5")


def peak_memory(device: str) -> dict[str, float]:
    """Peak RSS since reset_peak_memory (MiB; Linux only), and on CUDA the peak allocated GPU memory."""
    metrics = {}
    if (_PROC / "status").is_file():
        hwm = next(line for line in (_PROC / "status").read_text().splitlines() if line.startswith("VmHWM:"))
        metrics["train/peak_rss_mb"] = int(hwm.split()[1]) / 1024
    if device == "cuda":
        metrics["train/peak_gpu_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return metrics
