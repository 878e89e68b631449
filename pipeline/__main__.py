"""Hydra entry point: `python -m pipeline [+experiment=NAME] [overrides]`."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import PipelineError
from pipeline.preflight import preflight
from pipeline.schema import validate

log = logging.getLogger("pipeline")
# The launch directory, for paths that a multirun resolves before Hydra's own ${hydra:runtime.cwd} exists.
OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)


def _hydra_tags() -> dict[str, str]:
    """What Hydra knows about this job: overrides, and sweep dir and job number in a multirun."""
    hc = HydraConfig.get()
    tags = {"hydra/overrides": " ".join(hc.overrides.task) or "(none)",
            "hydra/output_dir": hc.runtime.output_dir}
    if hc.mode.name == "MULTIRUN":
        tags |= {"sweep/dir": hc.sweep.dir, "sweep/job_num": str(hc.job.num)}
    return tags


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        validate(cfg)
        preflight(cfg)
        if cfg.plan:
            from pipeline import plan

            print(plan.run(cfg), flush=True)
            return None
        from pipeline import launch, runner, sweep, tracking

        tracking.raise_keyboard_interrupt_on_sigterm()
        tags = _hydra_tags() | {"git_commit": tracking.git_commit(cfg.paths.root_dir)} | sweep.job_tags(cfg)
        twin = sweep.finished_twin(cfg, tags)
        if twin is not None:
            log.info("skipped: this config already FINISHED as run %s (resume=false re-runs it)",
                     twin.info.run_id)
            return twin.data.metrics.get("test/ndcg_at_10")
        threads = launch.job_threads(HydraConfig.get().launcher)
        if threads:
            launch.limit_threads(threads)
        summary = runner.run(cfg, tags)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    log.info("run %s finished: test nDCG@10 %.4f (base %.4f); model in %s",
             summary["run_id"], summary["metrics"]["test/ndcg_at_10"],
             summary["metrics"]["base/ndcg_at_10"], summary["model_dir"])
    return summary["metrics"]["test/ndcg_at_10"]


if __name__ == "__main__":
    main()
