"""OmegaConf resolvers the config uses; registered when this module is imported."""

from __future__ import annotations

import os
import secrets

from omegaconf import OmegaConf

# The launch directory, for paths that a multirun resolves before Hydra's own ${hydra:runtime.cwd} exists.
OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)
# HNPIPE_ROOT, or the launch directory; empty counts as unset (HNPIPE_ROOT= would put outputs/ at /).
OmegaConf.register_new_resolver("root", lambda: os.environ.get("HNPIPE_ROOT", "").strip() or os.getcwd(),
                                replace=True)

# Makes run and sweep directories unique: two runs started in the same second never share one.
# Fixed for the life of the process, so every place that resolves it agrees.
_RUN_SUFFIX = secrets.token_hex(3)
OmegaConf.register_new_resolver("run_suffix", lambda: _RUN_SUFFIX, replace=True)
