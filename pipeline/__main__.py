"""Hydra entry point: `python -m pipeline [+experiment=NAME] [overrides]` (the job itself: pipeline.app)."""

from __future__ import annotations

import atexit
import gc

import hydra
from omegaconf import DictConfig

import pipeline.config  # noqa: F401  registers the schema (and its resolvers) that conf/ extends
from pipeline import app
from pipeline.hydra_ext import errors, show

# Last at exit (atexit runs handlers in reverse): the interpreter's teardown would collect the
# libraries' millions of objects, 3 s of every run's exit on 2 cores; frozen, it takes 0.4 s.
atexit.register(gc.freeze)
errors.install()  # Hydra's own errors: one paragraph, exit 2, the closest key suggested
show.install()  # --cfg prints the config with secrets masked


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | tuple[float, ...] | None:
    return app.main(cfg)


if __name__ == "__main__":
    main()
