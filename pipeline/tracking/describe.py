"""What a run is, in words the MLflow UI shows: its name and its description.

Left to MLflow, a run gets a random name (and a sweep's children, from its seeded generator,
the same names); these say preset, k, loss, negatives, budget and seed at a glance.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from pipeline.config.losses import LOSSES

_MODELS = {"static": "the static model", "package": "{id}", "hub": "{id}"}


def negatives(cfg: DictConfig) -> str | None:
    """Where the hard negatives come from (live, frozen, bank, bank online); None where that does
    not apply (k=0, or a loss that embeds its own negatives)."""
    if cfg.k == 0 or not LOSSES[cfg.loss.name].modes:
        return None
    mode = cfg.loss.negatives
    return f"{mode} online" if mode == "bank" and cfg.loss.bank_mining == "online" else mode


def _sources(data: DictConfig) -> int:
    if data.source == "translations":
        return len(data.languages)
    if data.source == "multi":
        return len(data.include or data.sources)
    return 1


def _budget(cfg: DictConfig) -> str | None:
    return None if cfg.train.budget is None else f"{cfg.train.budget:g} {cfg.train.budget_unit}"


# Keys the name below already shows, in some form.
_NAMED = {"k", "loss", "loss.name", "loss.negatives", "loss.bank_mining", "seed", "train.budget",
          "train.budget_unit", "experiment", "preset", "data.include", "data.languages", "data.sources"}


def _value(cfg: DictConfig, key: str) -> str:
    value = OmegaConf.select(cfg, key)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def run_name(cfg: DictConfig, swept_keys: Sequence[str] = ()) -> str:
    """mlflow.run_name, or e.g. `hn_k8 k8 mnrl live s42` (preset, k, loss, negatives, sources,
    budget, seed; the parts that apply), then each other key the job's sweep varies, e.g.
    `learning_rate=0.0345`, so the jobs of one sweep are told apart in the UI's legends."""
    if cfg.mlflow.run_name:
        return str(cfg.mlflow.run_name)
    sources = _sources(cfg.data)
    budget = _budget(cfg)
    parts = [cfg.preset if cfg.preset != "none" else None, f"k{cfg.k}", cfg.loss.name, negatives(cfg),
             f"{sources}src" if sources > 1 else None, budget.replace(" ", "") if budget else None,
             f"s{cfg.seed}"]
    keys = [key.lstrip("+~") for key in swept_keys]
    parts += [f"{key.rsplit('.', 1)[-1]}={_value(cfg, key)}" for key in keys
              if key not in _NAMED and not key.startswith("hydra") and OmegaConf.select(cfg, key) is not None]
    return " ".join(part for part in parts if part)


def description(cfg: DictConfig, metrics: Mapping[str, float] | None = None) -> str:
    """One or two sentences: model, data, k, loss and length of training; once finished (`metrics`
    given), the test nDCG@10, its gain over the base model and the training time."""
    model = _MODELS[cfg.model.kind].format(id=cfg.model.id)
    sources = _sources(cfg.data)
    data = ", ".join(([f"{sources} sources"] if sources > 1 else []) +
                     ([f"at most {cfg.data.max_rows} rows"] if cfg.data.get("max_rows") else []))
    mode = negatives(cfg)
    hard = "plain pairs (k=0)" if cfg.k == 0 else f"k={cfg.k} {mode + ' ' if mode else ''}hard negatives"
    length = (f"a budget of {_budget(cfg)}" if cfg.train.budget is not None else
              f"{cfg.train.max_steps} steps" if cfg.train.max_steps > 0 else f"{cfg.train.epochs:g} epoch(s)")
    text = (f"{model} fine-tuned on {cfg.data.source} data{f' ({data})' if data else ''} with {cfg.loss.name} "
            f"on {hard}: {length} in batches of {cfg.train.batch_size} at learning rate "
            f"{cfg.train.learning_rate:g}, seed {cfg.seed}.")
    if metrics and "test/ndcg_at_10" in metrics:
        gain = metrics.get("gain/ndcg_at_10")
        text += (f" Test nDCG@10 {metrics['test/ndcg_at_10']:.4f}"
                 + (f" ({gain:+.4f} over the base model)" if gain is not None else "")
                 + (f", {metrics['time/train_s']:.1f} s of training" if "time/train_s" in metrics else "")
                 + (f" ({metrics['train/steps']:.0f} steps)." if "train/steps" in metrics else "."))
    return text


def swept(value: str) -> bool:
    """Whether an override's value is a sweep: values with a comma outside brackets (`1,2`, not the
    list `[1,2]`), or choice(...), range(...), interval(...)."""
    if value.split("(", 1)[0] in ("choice", "range", "interval", "tag", "glob"):
        return True
    while (flat := re.sub(r"\[[^\[\]]*\]", "", value)) != value:
        value = flat
    return "," in value


def sweep_name(preset: str, overrides: Mapping[str, str], sweep_id: str) -> str:
    """A sweep's parent run: e.g. `sweep find_k 3f2a`, or `sweep k=0,8 seed=1,2 3f2a` without a
    preset (its swept overrides, shortened); the id's random tail tells two sweeps apart."""
    what = preset if preset != "none" else " ".join(f"{key}={value}" for key, value in overrides.items()
                                                    if swept(str(value)))
    what = what if len(what) <= 60 else what[:59] + "…"
    return " ".join(part for part in ("sweep", what, sweep_id.rsplit("-", 1)[-1]) if part)
