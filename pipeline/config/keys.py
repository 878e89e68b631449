"""Every key the config has, and the closest one to a key that does not exist.

A typo (`trian.batch_size=8`, `+train.lr=0.1`) is refused naming the key the user
most likely meant, so a misspelt key can never silently do nothing.
"""

from __future__ import annotations

import difflib

from pipeline import redact
from pipeline.config.schema import DATA, GROUPS, TOP_LEVEL
from pipeline.losses import LOSSES


def known_keys() -> list[str]:
    """All config keys as dotted paths (every data source's and every loss's keys included)."""
    keys = set(TOP_LEVEL)
    for group, schemas in [("data", DATA.values()), ("loss", [spec.keys for spec in LOSSES.values()])] + \
            [(group, [schema]) for group, schema in GROUPS.items()]:
        for schema in schemas:
            keys |= {f"{group}.{field}" for field in schema.__dataclass_fields__}
    return sorted(keys)


def _initials(name: str) -> str:
    return "".join(word[0] for word in name.split("_") if word)


def closest_key(key: str, known: list[str]) -> str | None:
    """The existing key `key` most likely meant: a close spelling in the same group, a key of the
    group whose initials it is (`lr` for learning_rate), else the closest spelling overall."""
    group, _, name = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in known if group and k.startswith(group + ".")}
    match = [siblings[n] for n in difflib.get_close_matches(name, list(siblings), n=1, cutoff=0.6)]
    if not match and len(name) > 1:
        match = [k for n, k in siblings.items() if _initials(n) == name]
    return (match or difflib.get_close_matches(key, known, n=1, cutoff=0.6) or [None])[0]


def unknown_key_message(key: str, value: object = None) -> str:
    """`key` is not a config key: name the closest one, or list what there is."""
    known = known_keys()
    shown = f"{key}={redact.value(key, value)}" if value is not None else key
    guess = closest_key(key.lstrip("+~"), known)
    if guess:
        return f"{shown}: no such config key. Did you mean {guess}" + \
            (f"={redact.value(key, value)}?" if value is not None else "?")
    group = key.lstrip("+~").split(".", 1)[0]
    keys = [k for k in known if k.startswith(group + ".")]
    listing = f"the keys of {group} are {', '.join(keys)}" if keys else \
        f"the top-level keys are {', '.join(sorted({k.split('.', 1)[0] for k in known}))}"
    return f"{shown}: no such config key; {listing}."
