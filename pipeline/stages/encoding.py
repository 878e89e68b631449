"""Texts to embeddings: the one place every stage encodes through.

Batches are formed here (longest texts first, as sentence-transformers orders them),
not inside sentence-transformers, for two reasons: several processes can each encode
whole batches of one list and gather a result identical to one process's
(pipeline.distributed), and progress can be shown batch by batch (sentence-transformers'
own bar can only redraw itself on stderr, which floods a log file).
"""

from __future__ import annotations

from functools import partial

import numpy as np

from pipeline import distributed
from pipeline.progress import Progress


def encode_batch(model, texts: list[str], batch_size: int, query: bool, normalize: bool,
                 prompt: str | None) -> np.ndarray:
    """One batch, as a query or a document (prompts and routes differ), normalized or not."""
    encode_fn = model.encode_query if query else model.encode_document
    return encode_fn(texts, prompt=prompt, batch_size=batch_size, normalize_embeddings=normalize,
                     convert_to_numpy=True, show_progress_bar=False)


def encode(model, texts: list[str], batch_size: int, query: bool, normalize: bool = False,
           prompt: str | None = None, desc: str = "encode") -> np.ndarray:
    """(len(texts), dim) embeddings, row i for texts[i]; `prompt` prepended to each (None: the
    model's own default prompt for queries or documents, if it has one). Progress, named `desc`,
    counts this process's batches (in a shared encoding, its share of the texts)."""
    parts, shared = distributed.batches(texts, batch_size), distributed.is_leading()
    share = sum(len(parts[b]) for b in distributed.own_batches(len(parts), shared))
    shown = f"{desc} (this process's 1/{distributed.world_size()})" if shared else desc
    with Progress(share, shown, "text") as progress:
        def counted(batch: list[str], size: int, **options) -> np.ndarray:
            vectors = encode_batch(model, batch, size, **options)
            progress.update(len(batch))
            return vectors

        return distributed.encode(counted, texts, batch_size, query=query, normalize=normalize, prompt=prompt)


def serve(model) -> None:
    """In a multi-process run, a process other than 0: encode its share of what process 0 encodes."""
    distributed.serve(partial(encode_batch, model))
