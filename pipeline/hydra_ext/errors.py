"""Hydra's own errors as one paragraph and exit code 2, like every other refused input.

Hydra prints a composition error itself and exits 1, and for a typo of a key
(`trian.batch_size=8`) it suggests `+trian.batch_size=8`, which only adds the typo
to the config. Here its message is rewritten to name the closest existing key,
never `+` for a typo; HYDRA_FULL_ERROR=1 still shows Hydra's own traceback.
"""

from __future__ import annotations

import os
import re

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import ValidationError

from pipeline.config.declare import type_refusal
from pipeline.config.keys import unknown_key_message
from pipeline.errors import exit_interrupted, exit_with_message


def describe(exc: HydraException) -> str:
    """One paragraph for a Hydra error: what is wrong and what to type instead (masked where it is
    raised or printed: PipelineError, exit_with_message)."""
    text = str(exc).strip()
    cause = exc.__cause__
    if isinstance(cause, ValidationError) and cause.full_key:  # a value of the wrong type
        return str(type_refusal(cause.full_key, cause.value, getattr(cause, "object_type", None), str(cause)))
    override = re.match(r"Could not override '([^']+)'\.\s*To append to your config use \+[^=]+=(.*)", text, re.S)
    if override and str(getattr(cause, "full_key", "")).startswith(override.group(1) + "."):
        key, value, entry = override.group(1), override.group(2).splitlines()[0], getattr(cause, "full_key", "")
        return (f"{key}={value}: {key} is a mapping of names you choose, and a new name needs a '+': add "
                f"entries one by one, e.g. +{entry}=..., or replace the whole mapping with ++{key}={value}.")
    if override:
        return unknown_key_message(override.group(1), override.group(2).splitlines()[0],
                                   getattr(cause, "object_type", None))
    append = re.match(r"Could not append to config\. An item is already at '([^']+)'", text)
    if append:
        key = append.group(1)
        return f"+{key}: {key} is already a config key; set it without the '+', e.g. {key}=VALUE."
    if isinstance(exc, OverrideParseException):
        return "an override could not be parsed: " + " ".join(text.split("\n"))
    if isinstance(exc, MissingConfigException):
        return text.split("\nConfig search path:")[0].replace("\n\n", " ").replace("\n\t", " ").strip()
    return " ".join(text.split("\n"))


def install() -> None:
    """Route Hydra's errors through `describe`, and a sweep stopped by Ctrl-C or SIGTERM (its jobs in
    other processes) to the one line a stopped job prints.

    Hydra reports errors in hydra._internal.utils.run_and_report, a private function of the
    pinned hydra-core 1.3.8; its own handling stays for everything that is not a Hydra error."""
    import hydra._internal.utils as hydra_utils

    original = hydra_utils.run_and_report

    def run_and_report(func):
        def translated():
            try:
                return func()
            except HydraException as exc:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                exit_with_message(describe(exc))
            except KeyboardInterrupt as exc:
                exit_interrupted(exc)
        return original(translated)

    hydra_utils.run_and_report = run_and_report
