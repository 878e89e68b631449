"""Texts to embeddings: the one place every stage encodes through.

Batches are formed here (longest texts first, as sentence-transformers orders them), not
inside sentence-transformers, for two reasons: the processes of a multi-process run each
encode whole batches of one list and get a result identical to one process's
(pipeline.parallel.encode, a collective every process calls at the same point), and progress
can be shown batch by batch (sentence-transformers' own bar can only redraw itself on stderr,
which floods a log file).
"""

from __future__ import annotations

import numpy as np

from pipeline import parallel
from pipeline.progress import Progress


def encode(model, texts: list[str], batch_size: int, query: bool, normalize: bool = False,
           prompt: str | None = None, desc: str = "encode", shared: bool = True) -> np.ndarray:
    """(len(texts), dim) embeddings, row i for texts[i]; `prompt` prepended to each (None: the
    model's own default prompt for queries or documents, if it has one). Progress, named `desc`,
    counts this process's batches (in a multi-process run, its share of the texts). With
    shared=False this process encodes every batch itself (sentence-transformers' dev evaluator
    runs on process 0 only and shares model.encode across processes its own way)."""
    encode_fn = model.encode_query if query else model.encode_document
    parts = parallel.batches(texts, batch_size)
    share = sum(len(parts[b]) for b in parallel.own_batches(len(parts), shared))
    split = shared and parallel.world_size() > 1
    shown = f"{desc} (this process's 1/{parallel.world_size()})" if split else desc
    with Progress(share, shown, "text") as progress:
        def one_batch(batch: list[str]) -> np.ndarray:
            vectors = encode_fn(batch, prompt=prompt, batch_size=batch_size, normalize_embeddings=normalize,
                                convert_to_numpy=True, show_progress_bar=False)
            progress.update(len(batch))
            return vectors

        return parallel.encode(one_batch, texts, batch_size, shared)
