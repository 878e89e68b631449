"""Build the configured training loss, and say which k and batch each loss accepts."""

from __future__ import annotations

import copy

from omegaconf import DictConfig, OmegaConf

# Smallest k each loss can train with (MNRL also learns from in-batch negatives alone).
MIN_K = {"mnrl": 0, "hn_only": 1, "cached_mnrl": 0, "gist": 0, "triplet": 1}
# Largest k, where a loss has a ceiling below the global one.
MAX_K = {"gist": 1}
# Why a loss refuses k outside its range: said in the schema's error.
K_REASON = {
    "hn_only": "it contrasts each query's positive with its own hard negatives only, so it needs at least one",
    "triplet": "each triplet needs a hard negative",
    "gist": "GISTEmbedLoss takes (anchor, positive) pairs or (anchor, positive, negative) triplets only",
}
# Losses whose negatives include the other rows of the batch: they need batch_size >= 2.
IN_BATCH = {"mnrl", "cached_mnrl", "gist"}
# Losses that refuse a StaticEmbedding model (model=static), and why.
NEEDS_TRANSFORMER = {
    "gist": "GISTEmbedLoss needs a transformers tokenizer, which StaticEmbedding lacks",
    "cached_mnrl": "GradCache splits each column into mini-batches, and StaticEmbedding's flat "
                   "token stream has no batch dimension to split",
}


def score_shape(name: str, batch_size: int, k: int) -> tuple[int, int]:
    """(rows, cols) of the score matrix loss `name` computes per step."""
    if name in ("mnrl", "cached_mnrl"):
        return batch_size, batch_size * (1 + k)
    if name == "gist":  # anchor-positive, anchor-anchor, positive-positive, anchor-negative blocks
        return batch_size, batch_size * (3 + k)
    return batch_size, 1 + k  # hn_only, triplet: each anchor against its own candidates only


def _guide(cfg: DictConfig, model):
    """GIST's guide: a frozen copy of the base model, or the model cfg.guide names."""
    if cfg.guide is None:
        guide = copy.deepcopy(model)
    else:
        from pipeline.models import load_model

        guide = load_model(OmegaConf.create({"kind": "hub", "id": cfg.guide,
                                             "max_seq_length": model.max_seq_length}),
                           device=str(model.device))
    guide.requires_grad_(False)
    return guide.eval()


def build_loss(cfg: DictConfig, model):
    """The loss module for loss config `cfg`, wrapping `model`."""
    from sentence_transformers.sentence_transformer import losses

    from pipeline import loss_modules

    if cfg.name == "mnrl":
        return losses.MultipleNegativesRankingLoss(model, scale=cfg.scale)
    if cfg.name == "hn_only":
        return loss_modules.HardNegativesOnlyLoss(model, scale=cfg.scale)
    if cfg.name == "cached_mnrl":
        return losses.CachedMultipleNegativesRankingLoss(model, scale=cfg.scale,
                                                         mini_batch_size=cfg.mini_batch_size)
    if cfg.name == "gist":
        return losses.GISTEmbedLoss(model, _guide(cfg, model), temperature=cfg.temperature,
                                    margin_strategy=cfg.margin_strategy, margin=cfg.margin)
    if cfg.name == "triplet":
        metric = getattr(losses.TripletDistanceMetric, cfg.distance.upper())
        return loss_modules.MultiNegativeTripletLoss(model, distance_metric=metric, triplet_margin=cfg.margin)
    raise ValueError(f"unknown loss {cfg.name!r}")  # the schema refuses it before this
