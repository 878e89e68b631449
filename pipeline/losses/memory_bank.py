"""A memory bank of the corpus's vectors, so hard negatives cost a lookup instead of a forward.

Mined negatives come from the corpus (the unique training positives), so each can be named by
its corpus id and scored against a stored vector: a step then embeds only its anchors and
positives, and its cost no longer grows with k. The vectors go stale as the model trains; the
bank is re-encoded with the current model, without gradients, every `refresh` steps (ANCE,
Xiong et al. 2020, refreshes its index asynchronously; MoCo, He et al. 2020, keeps a queue of
past keys). It starts from given vectors, e.g. the normalized corpus embeddings the mining
stage already has, so step 0 needs no encode. Refreshes are counted and timed here, and since
the callback runs inside the training loop the trainer's own train time includes them.

Bank negatives get no gradient, as with negatives="frozen". Initial vectors may be normalized
where the model's own are not (StaticEmbedding has no Normalize): a cosine loss (MNRL, hn_only)
cannot tell, a distance loss (triplet) could, so the wrapper loss refuses TripletLoss in bank mode.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn
from transformers import TrainerCallback


class CorpusMemoryBank(nn.Module):
    """Vectors of `corpus` (one row per text, indexed by corpus id), looked up per step and
    re-encoded by `refresh`. A module with a buffer, so the trainer moves it with the loss.

    Args:
        corpus: the texts negatives are drawn from, in corpus-id order.
        vectors: their initial (len(corpus), dim) vectors; the bank keeps their dtype.
        encode_batch_size: batch size of the re-encoding.
        positives_width: for online mining, how many anchor-positive ids follow the k negative
            ids in each training row's label (0: the label holds the k negatives only).
    """

    def __init__(self, corpus: list[str], vectors, encode_batch_size: int = 64, positives_width: int = 0) -> None:
        super().__init__()
        vectors = torch.as_tensor(vectors)
        if vectors.ndim != 2 or len(vectors) != len(corpus):
            raise ValueError(f"Expected one vector per corpus text: {len(corpus)} texts, vectors of "
                             f"shape {tuple(vectors.shape)}")
        self.corpus = list(corpus)
        self.encode_batch_size = encode_batch_size
        self.positives_width = positives_width
        self.register_buffer("vectors", vectors.clone(), persistent=False)
        self.refreshes = 0
        self.refresh_seconds = 0.0

    def lookup(self, ids: Tensor) -> list[Tensor]:
        """The vectors of corpus ids `ids` (B, k): k tensors of (B, dim), one per negative column."""
        return list(self.vectors[ids.to(self.vectors.device)].unbind(1))

    @torch.no_grad()
    def refresh(self, model) -> None:
        """Re-encode the corpus with `model` as it is now (eval mode, no gradients; its train/eval
        mode is restored after) and add the time taken to refresh_seconds."""
        start = time.perf_counter()
        training = model.training
        try:
            vectors = model.encode(self.corpus, batch_size=self.encode_batch_size, convert_to_tensor=True,
                                   show_progress_bar=False)
        finally:
            model.train(training)
        self.vectors.copy_(vectors)
        self.refreshes += 1
        self.refresh_seconds += time.perf_counter() - start


class BankRefresh(TrainerCallback):
    """Refresh `bank` with the model being trained after every `every` optimizer steps (not after
    the last step: nothing would use it)."""

    def __init__(self, bank: CorpusMemoryBank, every: int) -> None:
        if every < 1:
            raise ValueError(f"A bank refresh every {every} steps: expected at least 1")
        self.bank = bank
        self.every = every

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 and state.global_step < state.max_steps:
            self.bank.refresh(model)
