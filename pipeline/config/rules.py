"""Config checks, run right after Hydra composes (and type-checks) the config.

`validate` first holds each group to its declaration (pipeline.config.schema, .losses): no key
the schema lacks, every key set, every value passing its declared test. Then the rules between
keys run: each a small named check below, in the order a user would fix them. Every failure is
one PipelineError naming the key, the value and what is allowed, raised before any data or
model loads; `validate` returns the resolved hardware, so a run resolves it once.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from pipeline.config.declare import check_group, fields
from pipeline.config.keys import closest_key, unknown_key_message
from pipeline.config.losses import LOSSES, MAX_K, NEGATIVES_MODES, SAME_TYPE_DIRECTIONS, StepEmbeddingKeys
from pipeline.config.schema import DATA, GROUPS, Config
from pipeline.errors import PipelineError, refused

Rule = Callable[[DictConfig], None]
RULES: list[Rule] = []


def rule(check: Rule) -> Rule:
    """Register a rule between keys (they run in the order they are defined)."""
    RULES.append(check)
    return check


def _unknown(path: str, value: Any, option: type | None = None) -> PipelineError:
    """A key the config does not have; for a whole new subtree (+trian.batch_size=8) its first leaf."""
    while isinstance(value, DictConfig) and len(value):
        first = str(next(iter(value.keys())))
        path, value = f"{path}.{first}", OmegaConf.select(value, first, throw_on_resolution_failure=False)
    return PipelineError(unknown_key_message(path, value, option))


def _loss_schema(loss: DictConfig):
    """The loss's declaration; keys of other losses are refused with the reason, not as unknown."""
    name = loss.get("name")
    if name not in LOSSES:
        raise refused("loss.name", name, f"one of {', '.join(LOSSES)}")
    spec = LOSSES[name]
    if not spec.modes:
        given = [key for key in StepEmbeddingKeys.__dataclass_fields__ if key in loss]
        if given:
            raise refused(f"loss.{given[0]}", loss[given[0]], f"not a key of loss={name}: {spec.negatives_reason}",
                          "Use loss=mnrl, hn_only or triplet for them.")
    return spec


def _check_sources(data: DictConfig) -> None:
    """data=multi: some sources, each of a known kind and as that kind declares, the included ones
    among them, and no two sources of the run under one name."""
    if not data.sources:
        raise PipelineError("data=multi needs its sources: e.g. +data.sources.de='{source: files, path: de.jsonl}' "
                            "+data.sources.fr='{source: files, path: fr.jsonl}', or a data option of your own "
                            "(docs/configuration.md, Several data sets in one run).")
    for name in data.include or []:
        if name not in data.sources:
            raise refused("data.include", list(data.include), f"names of data.sources ({', '.join(data.sources)})")
    kinds = [kind for kind in DATA if kind != "multi"]
    names: list[str] = []
    for name in data.include or list(data.sources):
        node, path = data.sources[name], f"data.sources.{name}"
        if not isinstance(node, DictConfig) or node.get("source") not in kinds:
            raise refused(f"{path}.source", node.get("source") if isinstance(node, DictConfig) else node,
                          f"one of {', '.join(kinds)}: each source is one of those kinds")
        try:
            full = OmegaConf.merge(OmegaConf.structured(DATA[node.source]), node)
        except ConfigKeyError as exc:
            guess = closest_key(str(exc.key), list(fields(DATA[node.source])))
            raise PipelineError(f"{path}.{exc.key}: not a key of a {node.source} source" +
                                (f"; did you mean {path}.{guess}?" if guess else
                                 f"; its keys are {', '.join(fields(DATA[node.source]))}.")) from None
        except OmegaConfBaseException as exc:
            raise PipelineError(f"{path}: {str(exc).splitlines()[0]}.") from None
        assert isinstance(full, DictConfig)
        check_group(path, full, DATA[node.source], _unknown)
        languages = list(full.get("languages", []))
        names += [name] if len(languages) <= 1 else [f"{name}-{language}" for language in languages]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise PipelineError(f"data.sources: two sources of this run are named {twice[0]!r} (a translations source "
                            "of several languages gives one per language, named <name>-<language>): rename one.")


def check_declarations(cfg: DictConfig) -> None:
    """Every group as declared: top-level keys and each group's keys, set and allowed."""
    top = {name: value for name, value in Config.__dataclass_fields__.items()
           if name not in ("data", "loss", *GROUPS)}
    for name in cfg.keys():
        if name not in Config.__dataclass_fields__ and name != "hydra":
            raise _unknown(str(name), OmegaConf.select(cfg, str(name), throw_on_resolution_failure=False))
    for name in top:
        spec = Config.__dataclass_fields__[name]
        ok = spec.metadata.get("ok")
        if ok is not None and not ok(cfg[name]):
            raise refused(name, cfg[name], spec.metadata["allowed"], spec.metadata["hint"])
    source = cfg.data.get("source")
    if source not in DATA:
        raise refused("data.source", source, f"one of {', '.join(DATA)}")
    missing = [part for part in ("train", "dev", "test") if OmegaConf.is_missing(cfg.split, part)]
    if missing:
        raise PipelineError(f"split ratios {', '.join(missing)} are not set: give all three, e.g. split=custom "
                            "split.train=0.6 split.dev=0.2 split.test=0.2.")
    check_group("data", cfg.data, DATA[source], _unknown)
    if source == "multi":
        _check_sources(cfg.data)
    check_group("loss", cfg.loss, _loss_schema(cfg.loss), _unknown)
    for group, schema in GROUPS.items():
        check_group(group, cfg[group], schema, _unknown)


@rule
def split_ratios_sum_to_one(cfg: DictConfig) -> None:
    split = cfg.split
    if split.test <= 0 and cfg.eval.test is None:
        raise refused("split.test", split.test, "a ratio above 0: the test split measures the run",
                      "Or fix the test set with eval.test=PATH; split.test=0 is allowed then.")
    if split.train <= 0:
        raise refused("split.train", split.train, "a ratio above 0: there must be data to train on")
    total = split.train + split.dev + split.test
    if abs(total - 1) > 1e-6:
        raise PipelineError(f"split ratios train={split.train}, dev={split.dev}, test={split.test} sum to {total:g}, "
                            f"not 1: adjust them, e.g. split.train={1 - split.dev - split.test:g}.")


@rule
def dev_rows_for_dev_evaluation(cfg: DictConfig) -> None:
    """Dev evaluation during training needs dev rows: catch that here, not inside the trainer."""
    if cfg.eval.cadence == "none":
        return
    for key, value in (("split.dev", cfg.split.dev), ("split.max_dev", cfg.split.max_dev)):
        if value == 0:
            raise refused(key, value, f"above 0 while eval.cadence={cfg.eval.cadence} evaluates on dev",
                          "Raise it, or set eval=none.")


@rule
def eval_every_fits_cadence(cfg: DictConfig) -> None:
    cadence, every = cfg.eval.cadence, cfg.eval.every
    if cadence == "fraction" and not (every is not None and 0 < every < 1):
        raise refused("eval.every", every, "a fraction of training between 0 and 1, e.g. eval.every=0.25")
    if cadence == "steps" and not (every is not None and every >= 1 and float(every).is_integer()):
        raise refused("eval.every", every, "a whole number of steps >= 1")


@rule
def some_training(cfg: DictConfig) -> None:
    if cfg.train.max_steps == -1 and not cfg.train.epochs > 0:
        raise refused("train.epochs", cfg.train.epochs, "above 0 while train.max_steps=-1: a run must train for "
                      "some steps", "Set train.epochs=1, or train.max_steps to a number of steps.")


@rule
def loss_takes_k(cfg: DictConfig) -> None:
    spec = LOSSES[cfg.loss.name]
    if not spec.min_k <= cfg.k <= spec.max_k:
        allowed = f"at least {spec.min_k}" if spec.max_k == MAX_K else f"{spec.min_k} to {spec.max_k}"
        raise refused("k", cfg.k, f"{allowed} for loss={cfg.loss.name}: {spec.k_reason}",
                      "Choose another k, or loss=mnrl (any k).")


@rule
def in_batch_negatives_need_a_batch(cfg: DictConfig) -> None:
    if cfg.train.batch_size < 2 and LOSSES[cfg.loss.name].in_batch:
        raise refused("train.batch_size", cfg.train.batch_size,
                      f"at least 2 for loss={cfg.loss.name}: in-batch negatives need other rows in the batch",
                      "loss=hn_only and loss=triplet train without them.")


@rule
def gather_needs_in_batch_negatives(cfg: DictConfig) -> None:
    loss = cfg.loss
    if loss.get("gather_across_devices") and not LOSSES[loss.name].in_batch:
        raise refused("loss.gather_across_devices", True, f"false for loss={loss.name}: it uses no in-batch "
                      "negatives, so there is nothing to gather from other processes",
                      "Use loss=mnrl, cached_mnrl or gist to gather.")


@rule
def mini_batch_fits_the_batch(cfg: DictConfig) -> None:
    loss, batch = cfg.loss, cfg.train.batch_size
    if "mini_batch_size" in loss and not 1 <= loss.mini_batch_size <= batch:
        raise refused("loss.mini_batch_size", loss.mini_batch_size,
                      f"1 to train.batch_size={batch}: it is how many rows of the batch are embedded at once, "
                      "so it bounds memory and cannot exceed the batch")


@rule
def per_direction_terms_hold_the_positive(cfg: DictConfig) -> None:
    """One softmax per term needs the positive in every term's candidates (the library raises
    otherwise, after the model loads): query_to_query and doc_to_doc never hold it."""
    loss = cfg.loss
    if loss.get("partition_mode") != "per_direction":
        return
    same_type = [term for term in loss.directions if term in SAME_TYPE_DIRECTIONS]
    if same_type:
        raise refused("loss.partition_mode", "per_direction",
                      f"joint while loss.directions holds {', '.join(same_type)}: per_direction takes one softmax "
                      "per term, each needing the positive among its candidates, and query_to_query and doc_to_doc "
                      "compare queries with queries and documents with documents only",
                      "Set loss.partition_mode=joint, or keep loss.directions to query_to_doc and doc_to_query.")


@rule
def loss_takes_the_model(cfg: DictConfig) -> None:
    why = LOSSES[cfg.loss.name].needs_transformer
    if why and cfg.model.kind == "static":
        raise refused("model.kind", "static", f"a transformer model for loss={cfg.loss.name}: {why}",
                      "Use model=minilm or model=hub.")


@rule
def dev_loss_needs_no_negatives(cfg: DictConfig) -> None:
    spec = LOSSES[cfg.loss.name]
    if spec.min_k > 0 and cfg.eval.kind == "loss" and cfg.eval.cadence != "none":
        raise refused("eval.kind", "loss", f"ir for loss={cfg.loss.name}: the dev split has no hard negatives, "
                      f"and {spec.k_reason}", "Use eval.kind=ir, or loss=mnrl for a dev loss.")


@rule
def loss_takes_the_negatives_mode(cfg: DictConfig) -> None:
    loss, spec = cfg.loss, LOSSES[cfg.loss.name]
    if spec.modes and loss.negatives not in spec.modes:
        why = f": {spec.negatives_reason}" if loss.negatives in NEGATIVES_MODES else ""
        raise refused("loss.negatives", loss.negatives, f"one of {', '.join(spec.modes)} for loss={loss.name}{why}")


@rule
def chunks_hold_the_longest_text(cfg: DictConfig) -> None:
    """Blames the key the user moved: loss.chunk_budget if it was set, else model.max_seq_length.
    auto's chunks hold at least max_seq_length tokens by construction (pipeline/losses/chunk_budget.py)."""
    loss, longest = cfg.loss, cfg.model.max_seq_length
    if not (LOSSES[loss.name].modes and loss.length_aware and loss.chunk_budget != "auto"
            and loss.chunk_budget < longest):
        return
    why = ("loss.chunk_budget is the most rows x padded tokens of one forward with loss.length_aware=true, and a "
           "smaller budget leaves every long text a forward of its own")
    if loss.chunk_budget == fields(StepEmbeddingKeys)["chunk_budget"].default:
        raise refused("model.max_seq_length", longest, f"at most loss.chunk_budget={loss.chunk_budget}: {why}",
                      f"Lower model.max_seq_length, or raise loss.chunk_budget to at least {longest}.")
    raise refused("loss.chunk_budget", loss.chunk_budget, f"at least model.max_seq_length={longest}: {why}",
                  f"For example loss.chunk_budget={max(1024, longest)}.")


@rule
def anchors_and_positives_are_different_columns(cfg: DictConfig) -> None:
    """One column as both sides makes every query its own answer: every metric 1.0, nothing learnt."""
    data = cfg.data
    nodes = {f"data.sources.{name}": node for name, node in (data.get("sources") or {}).items()}
    for path, node in {"data": data, **nodes}.items():
        if not isinstance(node, DictConfig) or node.get("source") not in ("files", "hf"):
            continue
        anchor, positive = (node.get(f"{role}_column", fields(DATA[node.source])[f"{role}_column"].default)
                            for role in ("anchor", "positive"))
        if anchor == positive:
            raise refused(f"{path}.positive_column", positive, f"a column other than {path}.anchor_column="
                          f"{anchor!r}: with one column as both sides every query is its own answer (every "
                          "metric 1.0)")


@rule
def candidates_leave_room_for_k(cfg: DictConfig) -> None:
    miner, k = cfg.miner, cfg.k
    if miner.range_min >= miner.range_max:
        raise refused("miner.range_min", miner.range_min,
                      f"below miner.range_max={miner.range_max}: candidates are ranks range_min..range_max-1",
                      "Lower miner.range_min or raise miner.range_max.")
    if k > 0 and miner.on_short == "drop" and miner.range_max - miner.range_min < k:
        raise refused("miner.range_max", miner.range_max,
                      f"at least range_min + k = {miner.range_min + k}, so {k} negatives fit in the candidate range",
                      "Raise miner.range_max, lower miner.range_min or k, or set miner.on_short=fill to top short "
                      "queries up with random negatives.")


@rule
def miner_scores_in_range(cfg: DictConfig) -> None:
    miner = cfg.miner
    # Bi-encoder scores are cosines, so a gap to the positive lies in [0, 2]; cross-encoder logits are unbounded.
    top = float("inf") if miner.cross_encoder else 2.0
    if miner.absolute_margin is not None and not 0 <= miner.absolute_margin <= top:
        raise refused("miner.absolute_margin", miner.absolute_margin,
                      f"null or a score gap from 0 to {top:g} below the positive's score")
    if None not in (miner.min_score, miner.max_score) and miner.min_score >= miner.max_score:
        raise refused("miner.min_score", miner.min_score, f"below miner.max_score={miner.max_score}")


@rule
def miner_tools_exist(cfg: DictConfig) -> None:
    miner = cfg.miner
    if miner.cross_encoder and not os.path.isdir(miner.cross_encoder):
        raise PipelineError(f"miner.cross_encoder={miner.cross_encoder!r}: no such directory; it must be a local "
                            "CrossEncoder model directory, or null for none.")
    if miner.use_faiss and importlib.util.find_spec("faiss") is None:
        raise PipelineError("miner.use_faiss=true needs faiss, which is not installed: pip install 'hnpipe[faiss]' "
                            "(faiss-cpu), or set miner.use_faiss=false.")


@rule
def budget_decides_the_steps(cfg: DictConfig) -> None:
    """A budget fixes the step count itself: max_steps beside it would say something else."""
    train = cfg.train
    if train.budget is not None and train.max_steps != -1:
        raise refused("train.max_steps", train.max_steps, f"-1 while train.budget={train.budget:g} "
                      f"{train.budget_unit} decides the steps",
                      "Set one of them: train.max_steps=-1, or train.budget=null.")


@rule
def budget_unit_fits_the_loss(cfg: DictConfig) -> None:
    """Tokens are counted where a step is embedded: by the step-embedding wrapper."""
    train, spec = cfg.train, LOSSES[cfg.loss.name]
    if train.budget is not None and train.budget_unit == "tokens" and not spec.modes:
        raise refused("train.budget_unit", "tokens", f"texts or seconds for loss={cfg.loss.name}: it embeds its "
                      "own texts, so the pipeline cannot count the tokens its steps feed the model")


@rule
def budget_buys_a_step(cfg: DictConfig) -> None:
    """A budget in texts below one step's fewest texts with gradients (its anchors and positives)."""
    train = cfg.train
    if train.budget is None or train.budget_unit != "texts":
        return
    fewest = train.batch_size * (2 if LOSSES[cfg.loss.name].modes else 2 + cfg.k)
    if train.budget < fewest:
        raise refused("train.budget", train.budget, f"at least {fewest} texts: one step of train.batch_size="
                      f"{train.batch_size} embeds at least that many with gradients",
                      "Raise train.budget, or lower train.batch_size.")


@rule
def online_mining_needs_a_bank(cfg: DictConfig) -> None:
    """Online mining re-mines from the memory bank: a loss that takes no bank negatives cannot have it
    (like bank_refresh_steps, the key acts only when loss.negatives=bank, so a sweep over modes may set it)."""
    loss, spec = cfg.loss, LOSSES[cfg.loss.name]
    if loss.get("bank_mining") == "online" and "bank" not in spec.modes:
        raise refused("loss.bank_mining", "online", f"fixed for loss={loss.name}: online mining re-mines each row's "
                      f"negatives from the memory bank, and loss={loss.name} takes no bank negatives "
                      f"({spec.negatives_reason})", "Use loss=mnrl or hn_only with loss.negatives=bank.")


@rule
def static_model_options(cfg: DictConfig) -> None:
    """Another tokenizer, dimension or start only make sense for a static model, and the base
    model's token embeddings fit only its own tokenizer and dimension."""
    model = cfg.model
    if model.kind != "static":
        for name, default in (("tokenizer", None), ("dim", None), ("init", "auto")):
            if model[name] != default:
                raise refused(f"model.{name}", model[name], f"{default} for model.kind={model.kind}: only a static "
                              "model (model=static) takes another tokenizer, dimension or first vectors")
        return
    if model.init == "base" and (model.tokenizer is not None or model.dim is not None):
        raise refused("model.init", "base", "auto, random or a .npy file with model.tokenizer or model.dim set: the "
                      "base model's token embeddings fit only its own tokenizer and dimension")
    if model.init not in ("auto", "base", "random") and not (model.init.endswith(".npy") and
                                                             os.path.isfile(model.init)):
        raise refused("model.init", model.init, "auto, base, random, or an existing .npy file of one vector per "
                      "token of the tokenizer")


def validate(cfg: DictConfig):
    """Raise PipelineError on the first bad value in the composed config; return the resolved Hardware."""
    check_declarations(cfg)
    for check in RULES:
        check(cfg)
    from pipeline.config import hardware  # imports torch: only for a config that passed everything else

    return hardware.resolve(cfg.hardware)
