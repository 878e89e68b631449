"""Cost model: what a training step embeds and scores, predicted before training.

With batch B and k hard negatives a step embeds B anchors, B positives and B*k
negatives; what it costs follows tokens (and padding) more than texts, so token
counts come from tokenizing the training data the way the trainer batches it.
After training, peak memory is measured here too; s/step and texts/s come from
the trainer's own log (pipeline.run.runner.train_metrics).
"""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig

from pipeline import distributed
from pipeline.losses import LOSSES

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


def _column_tokens(model, texts: list[str]) -> tuple[int, int | None]:
    """(real tokens, padded width) of one column of a batch, tokenized as the trainer does.

    A model whose features carry no attention mask (StaticEmbedding's flat token stream) pads
    nothing: width None."""
    features = model.preprocess(texts)
    mask = features.get("attention_mask")
    if mask is None:
        return int(features["input_ids"].numel()), None
    return int(mask.sum()), int(mask.shape[1])


def tokens_per_step(model, train_ds, batch_size: int) -> tuple[float, float]:
    """Mean (real, padded) tokens per step over the first batches of `train_ds`.

    The anchor column is its own forward pass, padded to its longest text; the candidate
    columns (positive, negatives) are merged into one, padded to the longest of them
    (sentence_transformers' embed_columns)."""
    columns = train_ds.column_names
    batches = max(1, min(math.ceil(len(train_ds) / batch_size),
                         TOKEN_SAMPLE_TEXTS // (batch_size * len(columns))))
    real = padded = 0
    for start in range(0, batches * batch_size, batch_size):
        rows = train_ds[start:start + batch_size]
        counts = [_column_tokens(model, rows[column]) for column in columns]
        n = len(rows[columns[0]])
        real_batch = sum(tokens for tokens, _ in counts)
        real += real_batch
        if counts[0][1] is None:
            padded += real_batch
        else:
            padded += n * counts[0][1] + n * (len(columns) - 1) * max(width for _, width in counts[1:])
    return real / batches, padded / batches


def predict(cfg: DictConfig, model, train_ds) -> dict[str, float]:
    """The cost/* figures of training `model` on `train_ds` with config `cfg`."""
    batch, k, world = cfg.train.batch_size, cfg.k, distributed.world_size()
    rows, cols = LOSSES[cfg.loss.name].score_shape(batch, k, world if cfg.loss.get("gather_across_devices") else 1)
    per_epoch, steps = total_steps(len(train_ds), cfg.train, world)
    real, padded = tokens_per_step(model, train_ds, batch)
    return {
        "cost/texts_per_step": texts_per_step(batch, k),
        "cost/tokens_per_step_real": real,
        "cost/tokens_per_step_padded": padded,
        "cost/score_rows": rows,
        "cost/score_cols": cols,
        "cost/steps_per_epoch": per_epoch,
        "cost/steps": steps,
        "cost/texts_per_epoch": len(train_ds) * (2 + k),
        "cost/tokens_per_epoch_real": real * per_epoch,
        "cost/tokens_per_epoch_padded": padded * per_epoch,
    }


_PROC = Path("/proc/self")


def reset_peak_memory(device: str) -> None:
    """Start peak-memory measurement here: the GPU's max-allocated counter, and the kernel's
    peak-RSS counter of this process (Linux: writing 5 to clear_refs resets VmHWM)."""
    if device == "cuda":
        import torch

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
        import torch

        metrics["train/peak_gpu_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return metrics
