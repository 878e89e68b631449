"""`python -m pipeline --cfg job` (or hydra, all) and `--info config` (or all) print the composed
config: with secrets masked.

Hydra prints them itself (Hydra.show_cfg and Hydra.show_info of the pinned hydra-core 1.3.8) before
any pipeline code runs, so a `+api_token=...` or a password in a URI would reach the terminal as
typed. show_info logs through a stdout handler it makes as it starts, which the redirection below
therefore captures too.
"""

from __future__ import annotations

import contextlib
import functools
import io
import sys

from pipeline import redact


def _masked(print_config):
    """`print_config` with what it writes to stdout passed through redact.yaml_text, the masking of
    Hydra's own YAML copies."""
    @functools.wraps(print_config)
    def masked(self, *args, **kwargs) -> None:
        shown = io.StringIO()
        try:
            with contextlib.redirect_stdout(shown):
                print_config(self, *args, **kwargs)
        finally:
            sys.stdout.write(redact.yaml_text(shown.getvalue()))

    return masked


def install() -> None:
    """Mask what --cfg and --info print."""
    from hydra._internal.hydra import Hydra

    Hydra.show_cfg = _masked(Hydra.show_cfg)  # type: ignore[method-assign]
    Hydra.show_info = _masked(Hydra.show_info)  # type: ignore[method-assign]
