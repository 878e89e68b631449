"""Hard negatives re-mined every step from a memory bank, against the model as it is now.

Negatives mined once with the base model stop being hard as the model learns (ANCE, Xiong et al.
2020, re-mines against a refreshed index for this reason). Here each step scores its live anchor
embeddings against every vector of the bank (B x N, no gradient: the step's only extra cost) and
takes each row's top k through the miner's own filters, as pipeline.stages.mine ranks them:
ranks range_min..range_max-1 of the non-positives, the absolute and relative margins against the
row's hardest (lowest-scoring) positive (NV-Retriever's TopK-PercPos is relative_margin=0.05),
and the max/min score bounds. A row's own positives, and every other positive its anchor has, are
never candidates; the bank holds each text once, so neither is a text identical to them. A row
left with fewer than k candidates keeps its base-model negatives in the places left over.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class MinerFilters:
    """The miner's settings that decide which bank vectors may be a row's negatives (miner.*)."""

    range_min: int = 0
    range_max: int = 100
    absolute_margin: float | None = None
    relative_margin: float | None = None
    max_score: float | None = None
    min_score: float | None = None


class OnlineMiner:
    """Picks each row's k negatives from the bank's vectors for the step's anchors, and keeps what
    it did: the share of window candidates the margins removed, and how many chosen negatives
    were not among the base model's (`means`, per step since the last call)."""

    def __init__(self, filters: MinerFilters) -> None:
        self.filters = filters
        self._sums = {"candidates": 0.0, "removed_by_margin": 0.0, "chosen": 0.0, "not_mined": 0.0, "steps": 0}

    @torch.no_grad()
    def pick(self, anchors: Tensor, vectors: Tensor, mined: Tensor, positives: Tensor) -> Tensor:
        """(B, k) corpus ids: anchors (B, d), bank vectors (N, d), the base model's negatives (B, k)
        and every positive of each row's anchor (B, P; -1 pads)."""
        f, k = self.filters, mined.shape[1]
        scores = F.normalize(anchors.detach().float(), dim=-1) @ F.normalize(vectors.float(), dim=-1).T
        own = positives >= 0
        ids = positives.clamp(min=0)
        lowest = scores.gather(1, ids).masked_fill(~own, float("inf")).amin(1, keepdim=True)
        is_positive = torch.zeros_like(scores, dtype=torch.long).scatter_add_(1, ids, own.long()) > 0
        scores = scores.masked_fill(is_positive, float("-inf"))
        window, window_ids = scores.topk(min(f.range_max, scores.shape[1]), dim=1)
        window, window_ids = window[:, f.range_min:], window_ids[:, f.range_min:]
        valid = torch.isfinite(window)
        by_margin = torch.zeros_like(valid)
        if f.absolute_margin is not None:
            by_margin |= window + f.absolute_margin > lowest
        if f.relative_margin is not None:
            by_margin |= window > lowest - lowest.abs() * f.relative_margin
        keep = valid & ~by_margin
        if f.max_score is not None:
            keep &= window <= f.max_score
        if f.min_score is not None:
            keep &= window >= f.min_score
        short = k - keep.shape[1]
        if short > 0:  # a window narrower than k: the base-model negatives fill the rest
            keep = F.pad(keep, (0, short), value=False)
            window_ids = F.pad(window_ids, (0, short), value=0)
        first = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :k]  # the kept ones, best first
        chosen = torch.where(keep.gather(1, first), window_ids.gather(1, first), mined)
        self._count(valid, by_margin, chosen, mined)
        return chosen

    def _count(self, valid: Tensor, by_margin: Tensor, chosen: Tensor, mined: Tensor) -> None:
        sums = self._sums
        sums["candidates"] += float(valid.sum())
        sums["removed_by_margin"] += float((valid & by_margin).sum())
        sums["chosen"] += chosen.numel()
        sums["not_mined"] += float((chosen[:, :, None] != mined[:, None, :]).all(-1).sum())
        sums["steps"] += 1

    def means(self) -> dict[str, float]:
        """Since the last call: the share of window candidates the margins removed, and the share of
        chosen negatives that were not the base model's mined ones (bank/*); {} with no step."""
        sums = self._sums
        if not sums["steps"]:
            return {}
        figures = {"bank/removed_by_margin": sums["removed_by_margin"] / max(sums["candidates"], 1.0),
                   "bank/not_mined": sums["not_mined"] / max(sums["chosen"], 1.0)}
        self._sums = dict.fromkeys(sums, 0.0)
        return figures
