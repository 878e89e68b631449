"""`python -m pipeline --cfg job` (or hydra, all) prints the composed config: with secrets masked.

Hydra prints it itself (hydra._internal.hydra.Hydra.show_cfg of the pinned hydra-core 1.3.8) before
any pipeline code runs, so a `+api_token=...` or a password in a URI would reach the terminal as typed.
"""

from __future__ import annotations

import contextlib
import io
import sys

from pipeline import redact


def install() -> None:
    """Route what show_cfg writes through redact.yaml_text, the masking of Hydra's own YAML copies."""
    from hydra._internal.hydra import Hydra

    original = Hydra.show_cfg

    def show_cfg(self, *args, **kwargs) -> None:
        shown = io.StringIO()
        try:
            with contextlib.redirect_stdout(shown):
                original(self, *args, **kwargs)
        finally:
            sys.stdout.write(redact.yaml_text(shown.getvalue()))

    Hydra.show_cfg = show_cfg  # type: ignore[method-assign]
