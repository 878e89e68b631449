"""The loss registry: one entry per loss says everything the pipeline needs to know of it.

Config checks read their choices, k ranges and messages from here; the cost model
reads the score-matrix shape; training builds the loss module from here. Adding
a loss is one entry (plus a file under losses/ if sentence-transformers lacks it,
and its conf/loss/NAME.yaml).

A loss that scores given embeddings (`compute_loss_from_embeddings`) is wrapped in
StepEmbeddingLoss (embedding_modes.py), which decides how a step's texts are embedded:
its keys (StepKeys) say where the negatives' vectors come from and how texts are batched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from pipeline.errors import refused

# The most hard negatives any run takes (config checks refuse more).
MAX_K = 64


@dataclass(frozen=True)
class LossSpec:
    """What a loss is: its config keys, the k and batch it accepts and why, its scores, its builder."""

    name: str
    keys: type  # dataclass of the loss group's keys (types only: defaults live in conf/loss/NAME.yaml)
    build: Callable[[DictConfig, Any], Any]  # (loss config, model) -> the loss module
    score_cols: Callable[[int, int], int]  # (batch, k) -> columns of the B-row score matrix per step
    min_k: int = 0
    max_k: int = MAX_K
    k_reason: str = ""  # why k outside min_k..max_k is refused
    in_batch: bool = False  # other rows' candidates are negatives too: needs batch >= 2
    needs_transformer: str = ""  # why model=static is refused, if it is
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    check: Optional[Callable[[DictConfig, int], None]] = None  # extra rule on (loss config, batch)
    # loss.negatives modes it takes; () = not wrapped in StepEmbeddingLoss: it embeds its own texts.
    negatives: tuple[str, ...] = ()
    negatives_reason: str = ""  # why the other modes (or all, when negatives is ()) are refused

    def score_shape(self, batch_size: int, k: int, gathered_from: int = 1) -> tuple[int, int]:
        """(rows, cols) of the score matrix this loss computes per step and process; with in-batch
        negatives gathered across `gathered_from` processes, their candidates count too."""
        return batch_size, self.score_cols(batch_size * (gathered_from if self.in_batch else 1), k)


@dataclass
class ScaledKeys:
    name: str = MISSING
    scale: float = MISSING
    # In a multi-process run, score every process's candidates as in-batch negatives.
    gather_across_devices: bool = MISSING


@dataclass
class CachedMnrlKeys(ScaledKeys):
    mini_batch_size: int = MISSING


@dataclass
class StepKeys:
    """How a wrapped loss's step embeds its texts (conf/loss/mnrl.yaml says what each does)."""

    negatives: str = MISSING
    bank_refresh_steps: int = MISSING
    length_aware: bool = MISSING
    dedupe: bool = MISSING
    chunk_budget: int = MISSING


@dataclass
class ScaledStepKeys(ScaledKeys, StepKeys):
    pass


@dataclass
class GistKeys:
    name: str = MISSING
    gather_across_devices: bool = MISSING
    guide: Optional[str] = MISSING
    temperature: float = MISSING
    margin_strategy: str = MISSING
    margin: float = MISSING


@dataclass
class TripletKeys(StepKeys):
    name: str = MISSING
    distance: str = MISSING
    margin: float = MISSING


def _mnrl(cfg: DictConfig, model):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(model, scale=cfg.scale, gather_across_devices=cfg.gather_across_devices)


def _hn_only(cfg: DictConfig, model):
    from pipeline.losses.hn_only import HardNegativesOnlyLoss

    return HardNegativesOnlyLoss(model, scale=cfg.scale)


def _cached_mnrl(cfg: DictConfig, model):
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    return CachedMultipleNegativesRankingLoss(model, scale=cfg.scale, mini_batch_size=cfg.mini_batch_size,
                                              gather_across_devices=cfg.gather_across_devices)


def _gist_guide(cfg: DictConfig, model):
    """GIST's guide: a frozen copy of the base model, or the model cfg.guide names."""
    if cfg.guide is None:
        guide = copy.deepcopy(model)
    else:
        from pipeline.run.models import load_model

        guide = load_model(OmegaConf.create({"kind": "hub", "id": cfg.guide,
                                             "max_seq_length": model.max_seq_length}),
                           device=str(model.device))
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


def _nothing_to_gather(cfg: DictConfig, batch_size: int) -> None:
    if cfg.gather_across_devices:
        raise refused("loss.gather_across_devices", True, f"false for loss={cfg.name}: it uses no in-batch "
                      "negatives, so there is nothing to gather from other processes",
                      "Use loss=mnrl, cached_mnrl or gist to gather.")


def _mini_batch_fits(cfg: DictConfig, batch_size: int) -> None:
    if not 1 <= cfg.mini_batch_size <= batch_size:
        raise refused("loss.mini_batch_size", cfg.mini_batch_size,
                      f"1 to train.batch_size={batch_size}: it is how many rows of the batch are "
                      "embedded at once, so it bounds memory and cannot exceed the batch")


def _in_batch_cols(batch: int, k: int) -> int:
    return batch * (1 + k)


def _own_cols(batch: int, k: int) -> int:
    return 1 + k


# Where a wrapped loss's negatives' vectors come from (loss.negatives; embedding_modes.py).
NEGATIVES_MODES = ("live", "frozen", "bank")

LOSSES: dict[str, LossSpec] = {spec.name: spec for spec in (
    LossSpec("mnrl", ScaledStepKeys, _mnrl, _in_batch_cols, in_batch=True, negatives=NEGATIVES_MODES),
    LossSpec("hn_only", ScaledStepKeys, _hn_only, _own_cols, min_k=1,
             k_reason="it contrasts each query's positive with its own hard negatives only, so it "
                      "needs at least one", check=_nothing_to_gather,
             negatives=NEGATIVES_MODES),
    LossSpec("cached_mnrl", CachedMnrlKeys, _cached_mnrl, _in_batch_cols, in_batch=True,
             needs_transformer="GradCache splits each column into mini-batches, and StaticEmbedding's "
                               "flat token stream has no batch dimension to split",
             check=_mini_batch_fits,
             negatives_reason="GradCache embeds the step itself, in mini-batches, so the step-embedding "
                              "keys (negatives, length_aware, dedupe, ...) have nothing to act on"),
    # GIST scores anchor-positive, anchor-anchor, positive-positive and anchor-negative blocks.
    LossSpec("gist", GistKeys, _gist, lambda batch, k: batch * (3 + k), max_k=1, in_batch=True,
             k_reason="GISTEmbedLoss takes (anchor, positive) pairs or (anchor, positive, negative) "
                      "triplets only",
             needs_transformer="GISTEmbedLoss needs a transformers tokenizer, which StaticEmbedding lacks",
             choices={"margin_strategy": ("absolute", "relative")},
             negatives_reason="GISTEmbedLoss embeds the step itself, with its guide model beside the "
                              "trained one, so the step-embedding keys (negatives, length_aware, dedupe, "
                              "...) have nothing to act on"),
    LossSpec("triplet", TripletKeys, _triplet, _own_cols, min_k=1,
             k_reason="each triplet needs a hard negative",
             choices={"distance": ("euclidean", "cosine", "manhattan")},
             negatives=("live", "frozen"),
             negatives_reason="a triplet distance depends on the vectors' norms, and a bank starts from "
                              "the mining stage's normalized vectors, which the model's own need not be"),
)}


def negatives_mode(cfg: DictConfig) -> str | None:
    """Where this run's negatives' vectors come from: loss.negatives, "live" when k = 0 (there are
    no negatives to act on), None for a loss that embeds its own texts (not wrapped)."""
    if not LOSSES[cfg.loss.name].negatives:
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
    from pipeline.losses.embedding_modes import StepEmbeddingLoss

    return StepEmbeddingLoss(loss, negatives=mode, length_aware=cfg.loss.length_aware,
                             dedupe=cfg.loss.dedupe, token_budget=cfg.loss.chunk_budget, bank=bank)
