"""OmegaConf resolvers the config uses; registered when this module is imported."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

# The launch directory, for paths that a multirun resolves before Hydra's own ${hydra:runtime.cwd} exists.
OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)
