"""The one function through which stages encode many texts, so that encoding shows progress.

sentence-transformers' own bar cannot be sent anywhere but stderr, where it floods a
log file with redraws; so texts are encoded in chunks, longest first as `encode` sorts
them (each chunk pads like the single call's batches), with progress per chunk, and put
back in their order: the same vectors as one call, up to float rounding.
"""

from __future__ import annotations

import numpy as np

from pipeline.progress import in_chunks

# Batches per chunk: a progress update every few seconds even for MiniLM on a CPU.
CHUNK_BATCHES = 4


def encode(model, texts: list[str], role: str | None, desc: str, batch_size: int, **options):
    """model.encode_query ('query'), encode_document ('document') or encode (None) of `texts`."""
    method = {"query": model.encode_query, "document": model.encode_document, None: model.encode}[role]
    options |= {"batch_size": batch_size, "show_progress_bar": False}
    if not texts:
        return method(texts, **options)
    order = np.argsort([-len(text) for text in texts], kind="stable")
    parts = in_chunks(lambda chunk: method(list(chunk), **options), [texts[i] for i in order],
                      CHUNK_BATCHES * batch_size, desc, "text")
    restore = np.argsort(order, kind="stable")
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)[restore]
    import torch

    return torch.cat(parts)[torch.as_tensor(restore)]
