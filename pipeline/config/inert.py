"""Keys a run's outcome does not depend on, given the rest of its config.

A k=0 run mines nothing and has no negatives to move: the miner's keys and the loss's
negatives keys do nothing there; the bank's keys act only with loss.negatives=bank. Two
configs that differ only in such keys are the same run: resume finds one for the other, and the
report pools them into one row (a sweep over negatives modes that includes k=0 would otherwise
show k=0 once per mode).
"""

from __future__ import annotations

from collections.abc import Mapping

_BANK = ("loss.bank_refresh_steps", "loss.bank_mining")


def inert(flat: Mapping[str, object]) -> set[str]:
    """The keys of `flat` (a config as dotted keys: MLflow params, or a flattened config) that
    change nothing in this run."""
    keys: set[str] = set()
    if str(flat.get("k")) == "0":
        keys |= {key for key in flat if key.startswith("miner.")} | {"loss.negatives", *_BANK}
    elif str(flat.get("loss.negatives", "live")) != "bank":
        keys |= set(_BANK)
    return keys & set(flat)
