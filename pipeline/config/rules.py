"""Config checks, run right after Hydra composes the config.

Each group's node is merged onto its typed shape (unknown keys and wrong types
fail there), then the rules between keys run. Every failure is one
PipelineError naming the key, the value and what is allowed, raised before any
data or model loads. `validate` returns the resolved hardware, so a run resolves
it once.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from pipeline import redact
from pipeline.config.keys import unknown_key_message
from pipeline.config.schema import CHOICES, DATA, GROUPS, TOP_LEVEL
from pipeline.errors import PipelineError, refused
from pipeline.losses import LOSSES, MAX_K, NEGATIVES_MODES, StepKeys

_ABSENT = object()


def _raw(node: DictConfig, key: str) -> object:
    """A value for a message, or None where it cannot be read."""
    try:
        return OmegaConf.select(node, key, default=None, throw_on_resolution_failure=False)
    except OmegaConfBaseException:
        return None


def _unknown(path: str, value: object) -> PipelineError:
    """A key the config does not have; for a whole new subtree (+trian.batch_size=8) its first leaf."""
    while isinstance(value, DictConfig) and len(value):
        first = str(next(iter(value.keys())))
        path, value = f"{path}.{first}", _raw(value, first)
    return PipelineError(unknown_key_message(path, value))


def _typed(group: str, node: DictConfig, schema: type) -> None:
    for key in node.keys():
        if key not in schema.__dataclass_fields__:
            raise _unknown(f"{group}.{key}", _raw(node, str(key)))
    try:
        OmegaConf.merge(OmegaConf.structured(schema), node)
    except ConfigKeyError as exc:  # a key nested under a known one
        raise PipelineError(unknown_key_message(f"{group}.{exc.full_key}")) from None
    except OmegaConfBaseException as exc:
        key = f"{group}.{exc.key}" if getattr(exc, "key", None) else group
        value = _raw(node, str(exc.key)) if getattr(exc, "key", None) else None
        reason = str(exc).splitlines()[0]
        raise PipelineError(f"{key}={redact.value(key, value)!r} is not allowed: {reason}. Expected fields "
                            f"of {group}: {', '.join(schema.__dataclass_fields__)}.") from None
    unset = [key for key in schema.__dataclass_fields__ if key not in node.keys()]  # deleted with ~key
    if unset:
        raise PipelineError(f"{group}.{unset[0]} is not set: the {group} group needs it "
                            f"(fields of {group}: {', '.join(schema.__dataclass_fields__)}).")


def _whole(low: int, high: int | None = None, null: bool = False):
    """A test for an integer in low..high (or null where null=True)."""
    def ok(value: Any) -> bool:
        if value is None:
            return null
        return isinstance(value, int) and not isinstance(value, bool) and value >= low and \
            (high is None or value <= high)
    return ok


# (key, test, what is allowed): keys whose type alone does not say which values make sense.
# A key a config lacks (another data source's, another loss's) is skipped.
LIMITS = [
    ("seed", _whole(0, 2**32 - 1), "an integer from 0 to 4294967295 (numpy's seed range)"),
    ("split.seed", _whole(0, 2**32 - 1), "an integer from 0 to 4294967295 (numpy's seed range)"),
    ("data.max_rows", _whole(1, null=True), "null (every row) or at least 1 row"),
    ("data.min_summary_words", _whole(0), "0 or more words"),
    ("data.min_body_chars", _whole(0), "0 or more characters"),
    ("data.max_body_chars", _whole(1), "at least 1 character"),
    ("model.max_seq_length", _whole(1), "at least 1 token"),
    ("train.max_steps", lambda v: v == -1 or v >= 1, "-1 (train for train.epochs) or at least 1 step"),
    ("train.learning_rate", lambda v: v > 0, "above 0"),
    ("train.warmup_ratio", lambda v: 0 <= v < 1, "a fraction of the training steps, from 0 to below 1"),
    ("train.logging_steps", _whole(1), "at least 1 step"),
    ("eval.dev_distractors", _whole(0), "0 or more documents"),
    ("eval.test_distractors", _whole(0), "0 or more documents"),
    ("eval.batch_size", _whole(1), "at least 1"),
    ("mlflow.experiment_name", lambda v: bool(v.strip()), "a non-empty name"),
    ("mlflow.log_model", lambda v: v is None or isinstance(v, bool),
     "true, false, or null (single runs log the model, sweep jobs do not)"),
    ("mlflow.log_system_metrics", lambda v: isinstance(v, bool), "true or false"),
    ("loss.scale", lambda v: v > 0, "above 0 (it is 1 / temperature)"),
    ("loss.temperature", lambda v: v > 0, "above 0"),
    ("loss.margin", lambda v: v >= 0, "0 or more"),
]


def _check_limits(cfg: DictConfig) -> None:
    for key, ok, allowed in LIMITS:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not ok(value):
            raise refused(key, value, allowed)
    if cfg.train.max_steps == -1 and not cfg.train.epochs > 0:
        raise refused("train.epochs", cfg.train.epochs,
                      "above 0 while train.max_steps=-1: a run must train for some steps",
                      "Set train.epochs=1, or train.max_steps to a number of steps.")


def _check_top_level(cfg: DictConfig) -> None:
    """No key the pipeline does not know: a typo must not silently do nothing."""
    known = set(TOP_LEVEL) | set(GROUPS) | {"data", "loss", "hydra"}
    for key in cfg.keys():
        if key not in known:
            raise _unknown(str(key), _raw(cfg, str(key)))
    if not isinstance(cfg.preset, str):
        raise refused("preset", cfg.preset, "a name (text)")


def _check_k(k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_K:
        raise refused("k", k, f"an integer number of hard negatives from 0 to {MAX_K}",
                      "For example k=8, or k=0 for plain pairs.")


def _check_ratios(split: DictConfig, fixed_test: bool) -> None:
    missing = [part for part in ("train", "dev", "test") if OmegaConf.is_missing(split, part)]
    if missing:
        raise PipelineError(f"split ratios {', '.join(missing)} are not set: give all three, e.g. "
                            "split=custom split.train=0.6 split.dev=0.2 split.test=0.2.")
    for part in ("train", "dev", "test"):
        if not 0 <= split[part] <= 1:
            raise refused(f"split.{part}", split[part], "a ratio between 0 and 1")
    if split.test <= 0 and not fixed_test:
        raise refused("split.test", split.test, "a ratio above 0: the test split measures the run",
                      "Or fix the test set with eval.test=PATH; split.test=0 is allowed then.")
    if split.train <= 0:
        raise refused("split.train", split.train, "a ratio above 0: there must be data to train on")
    total = split.train + split.dev + split.test
    if abs(total - 1) > 1e-6:
        raise PipelineError(
            f"split ratios train={split.train}, dev={split.dev}, test={split.test} sum to "
            f"{total:g}, not 1: adjust them, e.g. split.train={1 - split.dev - split.test:g}.")
    if split.max_test is not None and split.max_test < 1:
        raise refused("split.max_test", split.max_test,
                      "null (no cap) or at least 1 row: the test stage needs data")
    if split.max_dev is not None and split.max_dev < 0:
        raise refused("split.max_dev", split.max_dev, "null (no cap) or 0 or more rows")


def _check_dev_data(cfg: DictConfig) -> None:
    """Dev evaluation during training needs dev rows; catch that here, not inside the trainer."""
    if cfg.eval.cadence == "none":
        return
    for key, value in (("split.dev", cfg.split.dev), ("split.max_dev", cfg.split.max_dev)):
        if value == 0:
            raise refused(key, value, f"above 0 while eval.cadence={cfg.eval.cadence} evaluates on dev",
                          "Raise it, or set eval=none.")
    if cfg.eval.dev_max_corpus is not None and cfg.eval.dev_max_corpus < 1:
        raise refused("eval.dev_max_corpus", cfg.eval.dev_max_corpus, "null (no cap) or at least 1 document")


def _check_eval_every(eval_cfg: DictConfig) -> None:
    if eval_cfg.cadence not in ("steps", "fraction"):
        return
    every = eval_cfg.every
    if eval_cfg.cadence == "fraction":
        ok, allowed = every is not None and 0 < every < 1, \
            "a fraction of training between 0 and 1, e.g. eval.every=0.25"
    else:
        ok, allowed = every is not None and every >= 1 and float(every).is_integer(), \
            "a whole number of steps >= 1"
    if not ok:
        raise refused("eval.every", every, allowed)


def _check_loss(cfg: DictConfig) -> None:
    """Each loss's own limits on k, batch size, model and its own keys (from its registry entry)."""
    loss, k, batch = cfg.loss, cfg.k, cfg.train.batch_size
    spec = LOSSES[loss.name]
    if not spec.min_k <= k <= spec.max_k:
        allowed = f"at least {spec.min_k}" if spec.max_k == MAX_K else f"{spec.min_k} to {spec.max_k}"
        raise refused("k", k, f"{allowed} for loss={loss.name}: {spec.k_reason}",
                      "Choose another k, or loss=mnrl (any k).")
    if batch < 2 and spec.in_batch:
        raise refused("train.batch_size", batch,
                      f"at least 2 for loss={loss.name}: in-batch negatives need other rows in the batch",
                      "loss=hn_only and loss=triplet train without them.")
    if batch < 1:
        raise refused("train.batch_size", batch, "at least 1")
    for key, allowed in spec.choices.items():
        if loss[key] not in allowed:
            raise refused(f"loss.{key}", loss[key], f"one of {', '.join(allowed)}")
    if spec.check:
        spec.check(loss, batch)
    if spec.needs_transformer and cfg.model.kind == "static":
        raise refused("model.kind", "static", f"a transformer model for loss={loss.name}: "
                      f"{spec.needs_transformer}", "Use model=minilm or model=hub.")
    if spec.min_k > 0 and cfg.eval.kind == "loss" and cfg.eval.cadence != "none":
        raise refused("eval.kind", "loss", f"ir for loss={loss.name}: the dev split has no hard negatives, "
                      f"and {spec.k_reason}", "Use eval.kind=ir, or loss=mnrl for a dev loss.")
    if spec.negatives:
        _check_step_embedding(loss, spec, cfg.model.max_seq_length)


def _refuse_step_keys(loss: DictConfig) -> None:
    """A loss that embeds its own texts has no step-embedding keys: say why rather than 'unknown key'."""
    spec = LOSSES[loss.name]
    given = [key for key in StepKeys.__dataclass_fields__ if key in loss]
    if not spec.negatives and given:
        raise refused(f"loss.{given[0]}", loss[given[0]], f"not a key of loss={loss.name}: "
                      f"{spec.negatives_reason}", "Use loss=mnrl, hn_only or triplet for them.")


def _check_step_embedding(loss: DictConfig, spec, max_seq_length: int) -> None:
    """Where the negatives come from, refresh cadence and chunk budget (StepKeys)."""
    if loss.negatives not in spec.negatives:
        refused_why = f": {spec.negatives_reason}" if loss.negatives in NEGATIVES_MODES else ""
        raise refused("loss.negatives", loss.negatives,
                      f"one of {', '.join(spec.negatives)} for loss={loss.name}{refused_why}")
    if loss.bank_refresh_steps < 0:
        raise refused("loss.bank_refresh_steps", loss.bank_refresh_steps,
                      "0 (never: the bank keeps the mining stage's vectors) or a number of steps "
                      "between re-encodings of the corpus, e.g. 100")
    if loss.length_aware and loss.chunk_budget < max_seq_length:
        raise refused("loss.chunk_budget", loss.chunk_budget,
                      f"at least model.max_seq_length={max_seq_length} with loss.length_aware=true: it "
                      "is the most rows x padded tokens of one forward, and a smaller budget leaves "
                      "every long text a forward of its own", "For example loss.chunk_budget=1024.")
    if loss.chunk_budget < 1:
        raise refused("loss.chunk_budget", loss.chunk_budget, "at least 1 token")


def _check_miner(miner: DictConfig, k: int) -> None:
    """Candidate window, margins and score bounds must leave room for k negatives."""
    if miner.range_min < 0:
        raise refused("miner.range_min", miner.range_min, "0 or more")
    if miner.range_min >= miner.range_max:
        raise refused("miner.range_min", miner.range_min,
                      f"below miner.range_max={miner.range_max}: candidates are ranks "
                      "range_min..range_max-1", "Lower miner.range_min or raise miner.range_max.")
    if miner.batch_size < 1:
        raise refused("miner.batch_size", miner.batch_size, "at least 1")
    # Bi-encoder scores are cosines, so a gap to the positive lies in [0, 2]; cross-encoder logits are unbounded.
    top = float("inf") if miner.cross_encoder else 2.0
    if miner.absolute_margin is not None and not 0 <= miner.absolute_margin <= top:
        raise refused("miner.absolute_margin", miner.absolute_margin,
                      f"null or a score gap from 0 to {top:g} below the positive's score")
    if miner.relative_margin is not None and not 0 <= miner.relative_margin <= 1:
        raise refused("miner.relative_margin", miner.relative_margin,
                      "null or a fraction from 0 to 1 of the positive's score, e.g. 0.05")
    if None not in (miner.min_score, miner.max_score) and miner.min_score >= miner.max_score:
        raise refused("miner.min_score", miner.min_score, f"below miner.max_score={miner.max_score}")
    if k > 0 and miner.on_short == "drop" and miner.range_max - miner.range_min < k:
        raise refused("miner.range_max", miner.range_max,
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


def _check_choices(cfg: DictConfig) -> None:
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise refused(key, value, f"one of {', '.join(allowed)}")


def validate(cfg: DictConfig):
    """Raise PipelineError on the first bad value in the composed config; return the resolved Hardware."""
    _check_top_level(cfg)
    _check_k(cfg.k)
    for flag in ("resume", "plan", "report"):
        if not isinstance(cfg.get(flag), bool):
            raise refused(flag, cfg.get(flag), "true or false")
    source = cfg.data.get("source")
    if source not in DATA:
        raise refused("data.source", source, f"one of {', '.join(DATA)}")
    _typed("data", cfg.data, DATA[source])
    if cfg.loss.get("name") not in LOSSES:
        raise refused("loss.name", cfg.loss.get("name"), f"one of {', '.join(LOSSES)}")
    _refuse_step_keys(cfg.loss)
    _typed("loss", cfg.loss, LOSSES[cfg.loss.name].keys)
    for group, schema in GROUPS.items():
        _typed(group, cfg[group], schema)
    _check_choices(cfg)
    _check_ratios(cfg.split, cfg.eval.test is not None)
    if cfg.data.source == "files" and OmegaConf.is_missing(cfg.data, "path"):
        raise PipelineError("data=files needs a file: add data.path=/path/to/pairs.jsonl "
                            "(jsonl, csv or parquet).")
    _check_dev_data(cfg)
    _check_loss(cfg)
    _check_miner(cfg.miner, cfg.k)
    _check_eval_every(cfg.eval)
    _check_limits(cfg)
    from pipeline.config import hardware  # imports torch: only for a config that passed everything else

    return hardware.resolve(cfg.hardware)
