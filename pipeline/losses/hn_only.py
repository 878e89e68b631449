"""InfoNCE over a query's own positive and hard negatives, without in-batch negatives.

Imported lazily (by the registry's builder): importing sentence-transformers is
slow, and config checks must refuse bad input without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.util import pairwise_cos_sim
from torch import Tensor, nn


class HardNegativesOnlyLoss(nn.Module):
    def __init__(self, model, scale: float = 20.0) -> None:
        """
        InfoNCE restricted to each anchor's own candidates: its positive and its k hard negatives.
        Unlike :class:`MultipleNegativesRankingLoss`, other rows' positives and negatives are not
        used as in-batch negatives, so each anchor is scored against 1 + k candidates instead of
        B * (1 + k): a B x (1 + k) score matrix, and no dependence on the batch size for the
        negatives it sees. This is the softmax cross-entropy over a query's positive and its
        sampled negatives of the dense-retrieval literature (DPR without in-batch negatives,
        Karpukhin et al. 2020; ANCE, Xiong et al. 2020), in the form of InfoNCE (van den Oord et
        al. 2018).

        For anchor ``a_i`` with positive ``p_i`` and negatives ``n_i1 .. n_ik``::

            loss_i = -log softmax(scale * [cos(a_i, p_i), cos(a_i, n_i1), ..., cos(a_i, n_ik)])[0]

        and the loss is the mean over the batch.

        Args:
            model: SentenceTransformer model
            scale: Output of the similarity function is multiplied by this value (1 / temperature).

        Requirements:
            1. (anchor, positive, negative_1, ..., negative_k) n-tuples with k >= 1: without a
               negative there is nothing to contrast against.

        Inputs:
            +-------------------------------------------------+--------+
            | Inputs                                          | Labels |
            +=================================================+========+
            | (anchor, positive, negative_1, ..., negative_k) | none   |
            +-------------------------------------------------+--------+

        Relations:
            - :class:`MultipleNegativesRankingLoss` adds every other row's positive and negatives
              as in-batch negatives: B x B(1 + k) scores.
        """
        super().__init__()
        if not scale > 0:
            raise ValueError("Scale must be a positive value.")
        self.model = model
        self.scale = scale

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """Cross-entropy over the (1 + k) scores of each row; the own positive is column 0."""
        if len(embeddings) < 3:
            raise ValueError(f"Expected an anchor, a positive and at least one negative, got {len(embeddings)} columns")
        scores = self.scores(embeddings)
        own_positive = torch.zeros(scores.size(0), dtype=torch.long, device=scores.device)
        return F.cross_entropy(scores, own_positive)

    def scores(self, embeddings: list[Tensor]) -> Tensor:
        """(B, 1 + k) scaled cosine similarities of each anchor to its own positive and negatives."""
        anchors, *candidates = embeddings
        return torch.stack([pairwise_cos_sim(anchors, column) for column in candidates], dim=1) * self.scale

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale}

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale

    @property
    def citation(self) -> str:
        return """
@inproceedings{karpukhin2020dense,
    title={Dense Passage Retrieval for Open-Domain Question Answering},
    author={Vladimir Karpukhin and Barlas Oguz and Sewon Min and Patrick Lewis and Ledell Wu and
            Sergey Edunov and Danqi Chen and Wen-tau Yih},
    booktitle={Proceedings of EMNLP 2020},
    year={2020},
    url={https://arxiv.org/abs/2004.04906},
}
"""
