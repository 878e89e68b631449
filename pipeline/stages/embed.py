"""Embed stage: the training queries and corpus encoded once per (model, data).

Encoding is nearly all of mining's cost, and it does not depend on any miner
setting, so it is cached apart from the ranking: a new range, margin or score
bound re-ranks these vectors instead of re-encoding every text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.stages.encoding import encode

VERSION = "1"


def texts(train_ds) -> tuple[list[str], list[str]]:
    """Unique queries and the corpus (unique positives), first-seen order, as mine_hard_negatives has them."""
    pairs = train_ds.select_columns(["anchor", "positive"]).to_dict()
    return list(dict.fromkeys(pairs["anchor"])), list(dict.fromkeys(pairs["positive"]))


def run(model, train_ds, batch_size: int, out_dir: Path) -> None:
    """Write queries.npy and corpus.npy: normalized embeddings, the way mine_hard_negatives encodes."""
    queries, corpus = texts(train_ds)
    options = {"normalize_embeddings": True, "convert_to_numpy": True}
    np.save(out_dir / "corpus.npy", encode(model, corpus, "document", "embed corpus", batch_size, **options))
    np.save(out_dir / "queries.npy", encode(model, queries, "query", "embed queries", batch_size, **options))


def load(entry_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(query embeddings, corpus embeddings) an entry holds."""
    return np.load(entry_dir / "queries.npy"), np.load(entry_dir / "corpus.npy")
