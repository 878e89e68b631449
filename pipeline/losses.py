"""Build the configured training loss, and say which k each loss accepts."""

from __future__ import annotations

from omegaconf import DictConfig

# Smallest k each loss can train with (MNRL also learns from in-batch negatives alone).
MIN_K = {"mnrl": 0}


def build_loss(cfg: DictConfig, model):
    """The loss module for loss config `cfg`, wrapping `model`."""
    from sentence_transformers.sentence_transformer import losses

    if cfg.name == "mnrl":
        return losses.MultipleNegativesRankingLoss(model, scale=cfg.scale)
    raise ValueError(f"unknown loss {cfg.name!r}")  # the schema refuses it before this
