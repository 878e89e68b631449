"""Every key the config has, and the closest one to a key that does not exist.

A typo (`trian.batch_size=8`, `+train.lr=0.1`) is refused naming the key the user
most likely meant, so a misspelt key can never silently do nothing.
"""

from __future__ import annotations

import difflib

from pipeline import redact
from pipeline.config.declare import fields
from pipeline.config.losses import LOSSES, StepEmbeddingKeys
from pipeline.config.schema import DATA, GROUPS, Config


def known_keys() -> list[str]:
    """All config keys as dotted paths (every data source's and every loss's keys included)."""
    keys = {name for name in fields(Config) if name not in ("data", "loss", *GROUPS)}
    schemas: list[tuple[str, type]] = [("data", schema) for schema in DATA.values()]
    schemas += [("loss", schema) for schema in LOSSES.values()] + list(GROUPS.items())
    for group, schema in schemas:
        keys |= {f"{group}.{field}" for field in fields(schema)}
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
    match = match or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return match[0] if match else None


def _other_options(key: str, option: type | None) -> str | None:
    """Where `key` (group.name), absent from the chosen `option` of a group with one schema per
    option (data, loss), is a key after all: the message for it, or None."""
    group, _, name = key.lstrip("+~").partition(".")
    options: dict[str, type] = {"data": DATA, "loss": LOSSES}.get(group, {})
    if option is None or option not in options.values() or "." in name:
        return None
    takers = [choice for choice, schema in options.items() if name in fields(schema)]
    if not takers:
        return None
    chosen = next(choice for choice, schema in options.items() if schema is option)
    reason = getattr(option, "negatives_reason", "")
    why = f" ({reason})" if reason and name in fields(StepEmbeddingKeys) else ""
    return f"not a key of {group}={chosen}{why}; it is a key of {group}={', '.join(takers)}"


def unknown_key_message(key: str, value: object = None, option: type | None = None) -> str:
    """`key` is not a config key (of `option`, the chosen data or loss schema, if given): say whose
    key it is, or name the closest one, or list what there is."""
    known = known_keys()
    shown = f"{key}={redact.value(key, value)}" if value is not None else key
    elsewhere = _other_options(key, option)
    if elsewhere:
        return f"{shown}: {elsewhere}."
    guess = closest_key(key.lstrip("+~"), known)
    if guess:
        return f"{shown}: no such config key. Did you mean {guess}" + \
            (f"={redact.value(key, value)}?" if value is not None else "?")
    group = key.lstrip("+~").split(".", 1)[0]
    keys = [k for k in known if k.startswith(group + ".")]
    listing = f"the keys of {group} are {', '.join(keys)}" if keys else \
        f"the top-level keys are {', '.join(sorted({k.split('.', 1)[0] for k in known}))}"
    return f"{shown}: no such config key; {listing}."
