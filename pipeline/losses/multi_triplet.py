"""TripletLoss over k negatives: sentence-transformers' TripletLoss takes one."""

from __future__ import annotations

import torch
from sentence_transformers.sentence_transformer.losses import TripletLoss
from torch import Tensor


class MultiNegativeTripletLoss(TripletLoss):
    """:class:`TripletLoss` over (anchor, positive, negative_1, ..., negative_k) n-tuples: the
    triplet term of each (anchor, positive, negative_i), averaged over the k negatives. With
    k = 1 it is TripletLoss itself; each column is embedded once however large k is."""

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        anchor, positive, *negatives = embeddings
        triplet = super().compute_loss_from_embeddings
        per_negative = [triplet([anchor, positive, negative], labels) for negative in negatives]
        return torch.stack(per_negative).mean()
