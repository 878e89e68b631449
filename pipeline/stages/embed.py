"""Embed stage: the training queries and corpus encoded once per (model, data).

Encoding is nearly all of mining's cost, and it does not depend on any miner
setting, so it is cached apart from the ranking: a new range, margin or score
bound re-ranks these vectors instead of re-encoding every text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.stages import encoding, models, split
from pipeline.stages.stage import Context, Stage

# 2: texts are batched by pipeline.stages.encoding (float-level differences from version 1).
VERSION = "2"
# Embeddings per (model, data), whatever the miner setting.
STAGE = Stage("embed", VERSION,
              config=lambda cfg: {"max_seq_length": cfg.model.max_seq_length, "batch_size": cfg.miner.batch_size},
              upstream=(split.STAGE,), fingerprint=models.identity, collective=True)


def texts(train_ds) -> tuple[list[str], list[str]]:
    """Unique queries and the corpus (unique positives), first-seen order, as mine_hard_negatives has them."""
    pairs = train_ds.select_columns(["anchor", "positive"]).to_dict()
    return list(dict.fromkeys(pairs["anchor"])), list(dict.fromkeys(pairs["positive"]))


def run(ctx: Context, model, train_ds):
    """(the embed entry, seconds this run spent getting it): the train split's queries and corpus."""
    return ctx.cached(STAGE, lambda out: build(model, train_ds, ctx.cfg.miner.batch_size, out))


def build(model, train_ds, batch_size: int, out_dir: Path) -> None:
    """Write queries.npy and corpus.npy: normalized embeddings, the way mine_hard_negatives encodes."""
    queries, corpus = texts(train_ds)
    np.save(out_dir / "corpus.npy", encoding.encode(model, corpus, batch_size, query=False, normalize=True,
                                                    desc="embed corpus"))
    np.save(out_dir / "queries.npy", encoding.encode(model, queries, batch_size, query=True, normalize=True,
                                                     desc="embed queries"))


def load(entry_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(query embeddings, corpus embeddings) an entry holds."""
    return np.load(entry_dir / "queries.npy"), np.load(entry_dir / "corpus.npy")
