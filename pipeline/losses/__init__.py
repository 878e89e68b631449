"""The loss registry: how each declared loss (pipeline.config.losses) is built and scores.

A loss's keys, the k and batch it accepts and the step-embedding modes it takes are declared
once, on its config class; this registry adds what only the training code needs: the builder
of its module and the shape of the score matrix it computes (for the cost model). Adding a loss
is a class in pipeline/config/losses.py, an entry here, and a file under losses/ if
sentence-transformers lacks it.

A loss that scores given embeddings (`compute_loss_from_embeddings`) is wrapped in
StepEmbeddingLoss (embedding_modes.py), which decides how a step's texts are embedded: its keys
(StepEmbeddingKeys) say where the negatives' vectors come from and how texts are batched.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import DictConfig

from pipeline.config.losses import LOSSES as DECLARED
from pipeline.config.losses import LossKeys


@dataclass(frozen=True)
class LossSpec:
    """A declared loss, with its builder and its score-matrix shape."""

    keys: type[LossKeys]  # the declaration: config keys and what the loss accepts
    build: Callable[[DictConfig, Any], Any]  # (loss config, model) -> the loss module
    score_cols: Callable[[int, int], int]  # (batch, k) -> columns of the B-row score matrix per step

    def score_shape(self, batch_size: int, k: int, gathered_from: int = 1,
                    directions: Sequence[str] = ()) -> tuple[int, int]:
        """(rows, cols) of the score matrix this loss computes per step and process; with in-batch
        negatives gathered across `gathered_from` processes, their candidates count too. MNRL's
        `directions` beyond query_to_doc add their blocks: B queries (query_to_query), B queries
        (doc_to_query), B(1+k) documents (doc_to_doc)."""
        seen = batch_size * (gathered_from if self.keys.in_batch else 1)
        extra = {"query_to_query": seen, "doc_to_query": seen, "doc_to_doc": seen * (1 + k)}
        return batch_size, self.score_cols(seen, k) + sum(extra.get(term, 0) for term in directions)


def _terms(cfg: DictConfig) -> dict[str, Any]:
    """MultipleNegativesRankingLoss's score terms and hardness weighting (config.losses.MnrlTerms),
    as its arguments."""
    return {"directions": tuple(cfg.directions), "partition_mode": cfg.partition_mode,
            "hardness_mode": cfg.hardness_mode, "hardness_strength": float(cfg.hardness_strength)}


def _mnrl(cfg: DictConfig, model):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(model, scale=cfg.scale, gather_across_devices=cfg.gather_across_devices,
                                        **_terms(cfg))


def _hn_only(cfg: DictConfig, model):
    from pipeline.losses.hn_only import HardNegativesOnlyLoss

    return HardNegativesOnlyLoss(model, scale=cfg.scale)


def _cached_mnrl(cfg: DictConfig, model):
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    return CachedMultipleNegativesRankingLoss(model, scale=cfg.scale, mini_batch_size=cfg.mini_batch_size,
                                              gather_across_devices=cfg.gather_across_devices, **_terms(cfg))


def _gist_guide(cfg: DictConfig, model):
    """GIST's guide: a frozen copy of the base model, or the model cfg.guide names."""
    if cfg.guide is None:
        guide = copy.deepcopy(model)
    else:
        from sentence_transformers import SentenceTransformer

        guide = SentenceTransformer(cfg.guide, device=str(model.device))
        guide.max_seq_length = model.max_seq_length
    guide.requires_grad_(False)
    return guide.eval()


def _gist(cfg: DictConfig, model):
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss

    return GISTEmbedLoss(model, _gist_guide(cfg, model), temperature=cfg.temperature,
                         margin_strategy=cfg.margin_strategy, margin=cfg.margin,
                         gather_across_devices=cfg.gather_across_devices)


def _triplet(cfg: DictConfig, model):
    from sentence_transformers.sentence_transformer.losses import TripletDistanceMetric

    from pipeline.losses.multi_triplet import MultiNegativeTripletLoss

    metric = getattr(TripletDistanceMetric, cfg.distance.upper())
    return MultiNegativeTripletLoss(model, distance_metric=metric, triplet_margin=cfg.margin)


def _in_batch_cols(batch: int, k: int) -> int:
    return batch * (1 + k)


def _own_cols(batch: int, k: int) -> int:
    return 1 + k


_BUILT = {"mnrl": (_mnrl, _in_batch_cols), "hn_only": (_hn_only, _own_cols),
          "cached_mnrl": (_cached_mnrl, _in_batch_cols),
          # GIST scores anchor-positive, anchor-anchor, positive-positive and anchor-negative blocks.
          "gist": (_gist, lambda batch, k: batch * (3 + k)), "triplet": (_triplet, _own_cols)}
LOSSES: dict[str, LossSpec] = {name: LossSpec(keys, *_BUILT[name]) for name, keys in DECLARED.items()}


def negatives_mode(cfg: DictConfig) -> str | None:
    """Where this run's negatives' vectors come from: loss.negatives, "live" when k = 0 (there are
    no negatives to act on), None for a loss that embeds its own texts (not wrapped)."""
    if not LOSSES[cfg.loss.name].keys.modes:
        return None
    return cfg.loss.negatives if cfg.k > 0 else "live"


def build_loss(cfg: DictConfig, model, bank=None):
    """The loss module of run config `cfg` on `model`: the registry's loss, wrapped in
    StepEmbeddingLoss where it takes the step-embedding keys (negatives from `bank`, a
    CorpusMemoryBank, in bank mode). Config checks refused unknown names and modes."""
    loss = LOSSES[cfg.loss.name].build(cfg.loss, model)
    mode = negatives_mode(cfg)
    if mode is None:
        return loss
    from pipeline.losses.chunk_budget import from_config
    from pipeline.losses.embedding_modes import StepEmbeddingLoss
    from pipeline.losses.online_mining import MinerFilters, OnlineMiner

    miner = None
    if mode == "bank" and cfg.loss.bank_mining == "online":
        m = cfg.miner
        miner = OnlineMiner(MinerFilters(m.range_min, m.range_max, m.absolute_margin, m.relative_margin,
                                         m.max_score, m.min_score))
    budget = from_config(cfg.loss.chunk_budget, cfg.model.max_seq_length)
    return StepEmbeddingLoss(loss, negatives=mode, length_aware=cfg.loss.length_aware,
                             dedupe=cfg.loss.dedupe, token_budget=budget, bank=bank, miner=miner)
