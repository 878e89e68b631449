"""The config `python -m pipeline OVERRIDES` runs, composed in-process (the report, scripts,
tests): Hydra's errors become the one-paragraph PipelineError the command line prints."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from pipeline.errors import PipelineError

CONF = Path(__file__).resolve().parents[2] / "conf"


def compose(overrides: Sequence[str] = (), hydra_keys: bool = False) -> DictConfig:
    """The composed config (with Hydra's own `hydra` node where `hydra_keys`), not yet validated."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    import pipeline.config  # noqa: F401  registers the schema conf/ extends
    from pipeline.hydra_ext.errors import describe

    with initialize_config_dir(str(CONF), version_base="1.3"):
        try:
            return hydra_compose("config", overrides=list(overrides), return_hydra_config=hydra_keys)
        except HydraException as exc:
            raise PipelineError(describe(exc)) from None
