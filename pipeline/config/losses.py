"""The loss group's options: one dataclass per loss, its keys and what it accepts.

Each class is the loss's whole declaration: its config keys (with defaults and allowed values),
and as class attributes the k and batch it accepts and why, and the step-embedding modes it
takes. Config rules (pipeline.config.rules) read them to refuse a bad combination before any
model loads; pipeline.losses builds the loss module from the same class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, List, Optional

from pipeline.config.declare import above, key, whole

MAX_K = 64
# Where a wrapped loss's negatives' vectors come from (pipeline/losses/embedding_modes.py).
NEGATIVES_MODES = ("live", "frozen", "bank")
# loss.chunk_budget's default, measured on a CPU (docs/benchmarks.md); `auto` times it against one forward.
CHUNK_BUDGET = 1024


def _budget_ok(value) -> bool:
    return value == "auto" or whole(1)(value)


@dataclass
class LossKeys:
    """What every loss declares besides its keys (class attributes, not config keys)."""

    name: str = "?"
    min_k: ClassVar[int] = 0
    max_k: ClassVar[int] = MAX_K
    k_reason: ClassVar[str] = ""  # why a k outside min_k..max_k is refused
    in_batch: ClassVar[bool] = False  # other rows' candidates are negatives too: needs batch >= 2
    needs_transformer: ClassVar[str] = ""  # why model=static is refused, if it is
    # loss.negatives modes it takes; () = it embeds its own texts (not wrapped in StepEmbeddingLoss).
    modes: ClassVar[tuple[str, ...]] = ()
    negatives_reason: ClassVar[str] = ""  # why the other modes (or all, when negatives is ()) are refused


@dataclass
class StepEmbeddingKeys:
    """How a wrapped loss's step embeds its texts (docs/losses.md)."""

    # Where the k hard negatives' vectors come from: live (embedded with gradients, the plain
    # recipe), frozen (embedded in the same step, forward only) or bank (looked up in a memory bank
    # of the corpus, re-encoded every bank_refresh_steps: a step embeds only anchors and positives).
    negatives: str = key("live", f"one of {', '.join(NEGATIVES_MODES)} (the loss's own modes: the rule "
                         "loss_takes_the_negatives_mode)")
    # bank only: optimizer steps between re-encodings of the corpus (0 = never: the bank keeps the
    # vectors the mining stage computed with the base model).
    bank_refresh_steps: int = key(100, "0 (never: the bank keeps the mining stage's vectors) or a number of "
                                  "steps between re-encodings of the corpus, e.g. 100", whole(0))
    # Embed a step's texts in chunks of similar token count, each padded to its own longest text
    # (exact: only padding work goes), at most chunk_budget rows x padded tokens a chunk (a key
    # without "token" in its name: params naming a token are kept out of MLflow); auto: on the first
    # training steps, time chunks of 1024 (or max_seq_length) against one forward and keep the
    # faster (pipeline/losses/chunk_budget.py). Any: an integer or "auto" (OmegaConf has no Union).
    length_aware: bool = True
    chunk_budget: Any = key(CHUNK_BUDGET, "at least 1 token, or auto (time chunks against one forward on the "
                            "first steps and keep the faster)", _budget_ok)
    # Embed each distinct text of a step once; every use gets its gradient. Off by default: the
    # no_duplicates sampler already keeps repeats out of a batch.
    dedupe: bool = False
    # bank only: fixed (the negatives mined with the base model, looked up at the bank's vectors) or
    # online (re-mined every step from the whole bank against the current model's anchors, through
    # the miner's own filters: they stay hard as the model learns; pipeline/losses/memory_bank.py).
    bank_mining: str = key("fixed", choices=("fixed", "online"))


SCALE = "above 0 (it is 1 / temperature)"
GATHER = "true or false"

# MultipleNegativesRankingLoss's score terms (sentence-transformers 6); query_to_doc holds the positive.
DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
# The terms whose candidates never include the positive: one softmax each (per_direction) is ill-defined.
SAME_TYPE_DIRECTIONS = ("query_to_query", "doc_to_doc")
HARDNESS_MODES = ("in_batch_negatives", "hard_negatives", "all_negatives")


def _directions_ok(value) -> bool:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return False
    return "query_to_doc" in value and len(set(value)) == len(value) and all(v in DIRECTIONS for v in value)


@dataclass
class MnrlTerms:
    """MultipleNegativesRankingLoss's score terms and hardness weighting (sentence-transformers 6's
    arguments of the same names; defaults are the library's, the plain InfoNCE): docs/losses.md."""

    # Which similarity terms the softmax holds: query_to_doc (each query against every positive and
    # negative of the batch: always), query_to_query (against the other queries), doc_to_query (each
    # positive against every query: the symmetric term), doc_to_doc (each positive against the other
    # rows' positives and negatives).
    directions: List[str] = key(["query_to_doc"], f"a list of distinct terms from {', '.join(DIRECTIONS)} that "
                                "holds query_to_doc (the term with the positive), e.g. [query_to_doc,doc_to_query]",
                                _directions_ok)
    # joint: one softmax over every selected term; per_direction: one per term, averaged (the rule
    # per_direction_terms_hold_the_positive keeps out query_to_query and doc_to_doc).
    partition_mode: str = key("joint", choices=("joint", "per_direction"))
    # Adds hardness_strength * cos (no gradient) to the logits of: in-batch negatives (other rows'
    # candidates), hard_negatives (the row's own k negatives), all_negatives (both); null = none.
    hardness_mode: Optional[str] = key(None, f"null or one of {', '.join(HARDNESS_MODES)}",
                                       lambda v: v is None or v in HARDNESS_MODES)
    hardness_strength: float = key(0.0, "0 or more (the alpha added as alpha * cos to each weighted negative's "
                                   "logit; 0 = no weighting)", lambda v: v is not None and v >= 0)


@dataclass
class Mnrl(MnrlTerms, StepEmbeddingKeys, LossKeys):
    """MultipleNegativesRankingLoss: in-batch negatives plus the k hard negatives."""

    name: str = "mnrl"
    scale: float = key(20.0, SCALE, above(0))
    # Multi-process runs: score every process's candidates as in-batch negatives.
    gather_across_devices: bool = False
    in_batch: ClassVar[bool] = True
    modes: ClassVar[tuple[str, ...]] = NEGATIVES_MODES


@dataclass
class HnOnly(StepEmbeddingKeys, LossKeys):
    """InfoNCE over each query's own positive and its k hard negatives only (losses/hn_only.py)."""

    name: str = "hn_only"
    scale: float = key(20.0, SCALE, above(0))
    gather_across_devices: bool = False
    modes: ClassVar[tuple[str, ...]] = NEGATIVES_MODES
    min_k: ClassVar[int] = 1
    k_reason: ClassVar[str] = ("it contrasts each query's positive with its own hard negatives only, so it "
                               "needs at least one")
    in_batch: ClassVar[bool] = False


@dataclass
class CachedMnrl(MnrlTerms, LossKeys):
    """CachedMultipleNegativesRankingLoss (GradCache): MNRL's scores and gradients with activation
    memory bounded by mini_batch_size rows at a time."""

    name: str = "cached_mnrl"
    scale: float = key(20.0, SCALE, above(0))
    gather_across_devices: bool = False
    # Rows of the batch embedded at once: 1..train.batch_size.
    mini_batch_size: int = 8
    in_batch: ClassVar[bool] = True
    needs_transformer: ClassVar[str] = ("GradCache splits each column into mini-batches, and StaticEmbedding's "
                                        "flat token stream has no batch dimension to split")
    negatives_reason: ClassVar[str] = ("GradCache embeds the step itself, in mini-batches, so the step-embedding "
                                       "keys (negatives, length_aware, dedupe, ...) have nothing to act on")


@dataclass
class Gist(LossKeys):
    """GISTEmbedLoss: in-batch negatives the guide model rates above the positive are masked out as
    likely false negatives."""

    name: str = "gist"
    gather_across_devices: bool = False
    # null = a frozen copy of the base model; or a hub id / local model directory.
    guide: Optional[str] = None
    temperature: float = key(0.01, "above 0", above(0))
    margin_strategy: str = key("absolute", choices=("absolute", "relative"))
    margin: float = key(0.0, "0 or more", lambda v: v >= 0)
    max_k: ClassVar[int] = 1
    k_reason: ClassVar[str] = ("GISTEmbedLoss takes (anchor, positive) pairs or (anchor, positive, negative) "
                               "triplets only")
    in_batch: ClassVar[bool] = True
    needs_transformer: ClassVar[str] = "GISTEmbedLoss needs a transformers tokenizer, which StaticEmbedding lacks"
    negatives_reason: ClassVar[str] = ("GISTEmbedLoss embeds the step itself, with its guide model beside the "
                                       "trained one, so the step-embedding keys (negatives, length_aware, dedupe, "
                                       "...) have nothing to act on")


@dataclass
class Triplet(StepEmbeddingKeys, LossKeys):
    """TripletLoss on (anchor, positive, negative_i), averaged over the k negatives."""

    name: str = "triplet"
    distance: str = key("euclidean", choices=("euclidean", "cosine", "manhattan"))
    margin: float = key(5.0, "0 or more", lambda v: v >= 0)
    min_k: ClassVar[int] = 1
    k_reason: ClassVar[str] = "each triplet needs a hard negative"
    modes: ClassVar[tuple[str, ...]] = ("live", "frozen")
    negatives_reason: ClassVar[str] = ("a triplet distance depends on the vectors' norms, and a bank starts from "
                                       "the mining stage's normalized vectors, which the model's own need not be")


LOSSES: dict[str, type[LossKeys]] = {spec.name: spec for spec in (Mnrl, HnOnly, CachedMnrl, Gist, Triplet)}
