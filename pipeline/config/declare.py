"""How a config key is declared: once, as a dataclass field that holds its default, the values it
allows (in words, for messages) and the test a value must pass.

Hydra checks a value's type when it composes the config (the dataclasses are registered in its
ConfigStore: pipeline.config.schema); `check_group` runs the tests that types cannot say, key by
key, and names the key, the value and what is allowed when one fails.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import PipelineError, refused
from pipeline.redact import value as shown


def key(default: Any, allowed: str = "", ok: Callable[[Any], bool] | None = None,
        choices: tuple[str, ...] = (), hint: str = "", missing: str = "") -> Any:
    """A config key with its `default`; a value must satisfy `ok` (or be one of `choices`), and
    `allowed` says in words what passes (derived from `choices` if not given). `missing` is the
    message for a key without a default that was not given (MISSING)."""
    test = ok
    if choices:
        allowed = allowed or f"one of {', '.join(choices)}"
        test = ok or (lambda value: value in choices)
    metadata = {"allowed": allowed, "ok": test, "hint": hint, "choices": choices, "missing": missing}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def whole(low: int, high: int | None = None, null: bool = False) -> Callable[[Any], bool]:
    """A test for an integer from `low` to `high` (and null where `null`)."""
    def ok(value: Any) -> bool:
        if value is None:
            return null
        return isinstance(value, int) and not isinstance(value, bool) and value >= low and \
            (high is None or value <= high)
    return ok


def above(low: float) -> Callable[[Any], bool]:
    return lambda value: value is not None and value > low


def fields(schema: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(schema)}


def allowed(schema: type, name: str) -> str:
    """What key `name` of `schema` allows, in words ('' if its type says it all)."""
    return fields(schema)[name].metadata.get("allowed", "")


def check_group(path: str, node: DictConfig, schema: type,
                unknown: Callable[[str, Any, type], PipelineError]) -> None:
    """Every key of `node` is one of `schema`'s, is set, and passes its test; `unknown(key, value,
    schema)` is the error for a key the schema lacks (a `+key=` override Hydra let through)."""
    declared = fields(schema)
    for name in node.keys():
        if name not in declared:
            raise unknown(f"{path}.{name!s}", OmegaConf.select(node, str(name), throw_on_resolution_failure=False),
                          schema)
    for name, spec in declared.items():
        full = f"{path}.{name}" if path else name
        if OmegaConf.is_missing(node, name):
            raise PipelineError(spec.metadata.get("missing") or
                                f"{full} is not set: give it a value ({spec.metadata.get('allowed') or spec.type}).")
        ok = spec.metadata.get("ok")
        if ok is not None and not ok(node[name]):  # keys without a test stay unresolved (${hydra:...})
            raise refused(full, shown(full, node[name]), spec.metadata["allowed"], spec.metadata["hint"])


_REASONS = (("could not be converted to Integer", "not an integer"),
            ("could not be converted to Float", "not a number"),
            ("is not a valid bool", "not a valid bool"), ("is not Optional", "it cannot be null"),
            ("is not a ListConfig", "not a list"))


def type_refusal(key: str, value: Any, schema: type | None, reason: str) -> PipelineError:
    """A value Hydra could not give the key's declared type: the key, the value, why, what is allowed."""
    why = next((short for long, short in _REASONS if long in reason), reason.splitlines()[0])
    name = key.rpartition(".")[2]
    spec = fields(schema).get(name) if dataclasses.is_dataclass(schema) else None
    words = spec.metadata.get("allowed") if spec is not None else ""
    hint = spec.metadata.get("hint") if spec is not None else ""
    return PipelineError(f"{key}={shown(key, value)!r} is not allowed: {why}{'; ' + words if words else ''}."
                         + (f" {hint}" if hint else ""))
