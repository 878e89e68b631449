"""Keys a run's outcome does not depend on, given the rest of its config.

A k=0 run mines nothing and has no negatives to move: the miner's keys and the loss's
negatives keys do nothing there; the bank's keys act only with loss.negatives=bank. MNRL's
hardness weighting acts only with both a loss.hardness_mode and a loss.hardness_strength above
0 (and hardness_mode=hard_negatives only on hard negatives: not at k=0). Two configs that differ
only in such keys are the same run: resume finds one for the other, and the report pools them
into one row (a sweep over negatives modes that includes k=0 would otherwise show k=0 once per
mode).

Keys added after runs were recorded (`ADDED`) are left out too while at their default, which is
the behaviour before they existed: a run recorded without them is the same run as one at their
defaults (its config hash and its report row stay what they were).
"""

from __future__ import annotations

from collections.abc import Mapping

_BANK = ("loss.bank_refresh_steps", "loss.bank_mining")
_HARDNESS = ("loss.hardness_mode", "loss.hardness_strength")
# Key -> its default, as the flat config (a list) or an MLflow param (its str) shows it:
# sentence-transformers 6's MultipleNegativesRankingLoss options (pipeline.config.losses.MnrlTerms).
ADDED: dict[str, object] = {"loss.directions": ["query_to_doc"], "loss.partition_mode": "joint",
                            "loss.hardness_mode": None, "loss.hardness_strength": 0.0}


def _is_default(value: object, default: object) -> bool:
    if isinstance(default, float):
        try:
            return float(str(value)) == default
        except ValueError:
            return False
    return str(list(value) if isinstance(value, (list, tuple)) else value) == str(default)


def inert(flat: Mapping[str, object]) -> set[str]:
    """The keys of `flat` (a config as dotted keys: MLflow params, or a flattened config) that
    change nothing in this run, or that were added later and are at their default."""
    keys: set[str] = set()
    k0 = str(flat.get("k")) == "0"
    if k0:
        keys |= {key for key in flat if key.startswith("miner.")} | {"loss.negatives", *_BANK}
    elif str(flat.get("loss.negatives", "live")) != "bank":
        keys |= set(_BANK)
    mode = flat.get("loss.hardness_mode")
    if _is_default(mode, None) or _is_default(flat.get("loss.hardness_strength", 0.0), 0.0) or \
            (k0 and str(mode) == "hard_negatives"):
        keys |= set(_HARDNESS)
    keys |= {key for key, default in ADDED.items() if key in flat and _is_default(flat[key], default)}
    return keys & set(flat)
