"""The config's shape: each group's keys and their types, and the values some keys allow.

Defaults live in conf/ only: every field here is MISSING, so a YAML option that
forgets a key is caught, and a default is never written twice. The loss group's
keys come from the loss registry (pipeline.losses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING


@dataclass
class DocstringsData:
    source: str = MISSING
    packages: list[str] = MISSING
    min_summary_words: int = MISSING
    min_body_chars: int = MISSING
    max_body_chars: int = MISSING
    max_rows: Optional[int] = MISSING


@dataclass
class HubData:
    source: str = MISSING
    path: str = MISSING
    name: Optional[str] = MISSING
    split: str = MISSING
    revision: Optional[str] = MISSING
    anchor_column: str = MISSING
    positive_column: str = MISSING
    max_rows: Optional[int] = MISSING


@dataclass
class FilesData:
    source: str = MISSING
    path: str = MISSING
    anchor_column: str = MISSING
    positive_column: str = MISSING
    max_rows: Optional[int] = MISSING


@dataclass
class Split:
    train: float = MISSING
    dev: float = MISSING
    test: float = MISSING
    max_dev: Optional[int] = MISSING
    max_test: Optional[int] = MISSING
    group_column: Optional[str] = MISSING
    seed: int = MISSING


@dataclass
class Miner:
    sampling_strategy: str = MISSING
    range_min: int = MISSING
    range_max: int = MISSING
    max_score: Optional[float] = MISSING
    min_score: Optional[float] = MISSING
    absolute_margin: Optional[float] = MISSING
    relative_margin: Optional[float] = MISSING
    batch_size: int = MISSING
    use_faiss: bool = MISSING
    on_short: str = MISSING
    cross_encoder: Optional[str] = MISSING
    order: str = MISSING


@dataclass
class Model:
    kind: str = MISSING
    id: str = MISSING
    max_seq_length: int = MISSING


@dataclass
class Train:
    batch_size: int = MISSING
    epochs: float = MISSING
    max_steps: int = MISSING
    learning_rate: float = MISSING
    warmup_ratio: float = MISSING
    batch_sampler: str = MISSING
    logging_steps: int = MISSING


@dataclass
class Eval:
    cadence: str = MISSING
    every: Optional[float] = MISSING
    dev_distractors: int = MISSING
    test_distractors: int = MISSING
    batch_size: int = MISSING
    kind: str = MISSING
    dev_max_corpus: Optional[int] = MISSING
    query_prompt: Optional[str] = MISSING
    corpus_prompt: Optional[str] = MISSING
    test: Optional[str] = MISSING


@dataclass
class Hardware:
    device: str = MISSING
    precision: str = MISSING


@dataclass
class Paths:
    root_dir: str = MISSING
    outputs_dir: str = MISSING
    cache_dir: str = MISSING
    run_dir: str = MISSING


@dataclass
class Mlflow:
    tracking_uri: str = MISSING
    artifact_root: str = MISSING
    experiment_name: str = MISSING
    run_name: Optional[str] = MISSING
    log_model: Optional[bool] = MISSING
    log_system_metrics: bool = MISSING


# Top-level scalars (the groups, `paths` and Hydra's own `hydra` are the other top-level keys).
TOP_LEVEL = ("k", "seed", "preset", "resume", "plan", "report")
DATA = {"docstrings": DocstringsData, "hf": HubData, "files": FilesData}
GROUPS = {"split": Split, "miner": Miner, "model": Model, "train": Train,
          "eval": Eval, "hardware": Hardware, "mlflow": Mlflow, "paths": Paths}
# Keys whose value is one of a fixed set (the loss's own choices are in its registry entry).
CHOICES = {
    "data.source": tuple(DATA),
    "miner.sampling_strategy": ("top", "random"),
    "miner.on_short": ("drop", "fill"),
    "miner.order": ("rank", "shuffled", "reversed"),
    "model.kind": ("package", "static", "hub"),
    "train.batch_sampler": ("no_duplicates", "batch_sampler"),
    "eval.cadence": ("none", "final", "epoch", "steps", "fraction"),
    "eval.kind": ("ir", "loss"),
    "hardware.device": ("cpu", "cuda", "tpu", "auto"),
    "hardware.precision": ("fp32", "fp16", "bf16", "auto"),
}
