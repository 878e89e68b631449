"""What one Hydra job does: check the config, then plan, skip (resume) or run.

Hydra's globals are read here and nowhere below: the runner gets the config and
the resolved hardware, the recorder the tags.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pipeline.config.preflight import preflight
from pipeline.config.rules import validate
from pipeline.errors import reported
from pipeline.tracking import names

log = logging.getLogger("pipeline")


def _hydra_tags() -> dict[str, str]:
    """What Hydra knows about this job: overrides, and sweep dir and job number in a multirun."""
    hc = HydraConfig.get()
    tags = {names.HYDRA_OVERRIDES: " ".join(hc.overrides.task) or "(none)",
            names.HYDRA_OUTPUT_DIR: hc.runtime.output_dir}
    if hc.mode.name == "MULTIRUN":
        tags |= {names.SWEEP_DIR: hc.sweep.dir, names.SWEEP_JOB: str(hc.job.num)}
    return tags


def _sweep_dir() -> Path | None:
    hc = HydraConfig.get()
    return Path(hc.sweep.dir) if hc.mode.name == "MULTIRUN" else None


def _run(cfg: DictConfig, hardware, tags: dict[str, str]) -> float:
    from pipeline.run import runner
    from pipeline.run.provenance import environment_tags
    from pipeline.tracking.recorder import recording

    with recording(cfg, tags | environment_tags() | {names.PRESET: cfg.preset}) as recorder:
        result = runner.run(cfg, hardware, recorder)
        recorder.finish(result)
    metrics = result.metrics
    log.info("run %s finished: test nDCG@10 %.4f (base %.4f); model in %s", recorder.run_id,
             metrics[names.OBJECTIVE], metrics["base/ndcg_at_10"], result.model_dir)
    return metrics[names.OBJECTIVE]


def main(cfg: DictConfig) -> float | None:
    """Run (or plan, or skip as already finished) the job `cfg`; bad input exits 2 with one message."""
    with reported():
        hardware = validate(cfg)
        preflight(cfg)
        if cfg.plan:
            from pipeline.run import plan

            print(plan.run(cfg, hardware), flush=True)
            return None
        from pipeline.hydra_ext import launch
        from pipeline.run.provenance import git_commit
        from pipeline.run.signals import raise_keyboard_interrupt_on_sigterm
        from pipeline.tracking import sweeps

        raise_keyboard_interrupt_on_sigterm()
        tags = _hydra_tags() | {names.GIT_COMMIT: git_commit(cfg.paths.root_dir)} \
            | sweeps.job_tags(cfg, _sweep_dir())
        if cfg.resume and _sweep_dir() is not None:
            twin = sweeps.finished_twin(cfg.mlflow, tags, HydraConfig.get().job.num)
            if twin is not None:
                log.info("skipped: this config already FINISHED as run %s (resume=false re-runs it)",
                         twin.info.run_id)
                return twin.data.metrics.get(names.OBJECTIVE)
        threads = launch.job_threads(HydraConfig.get().launcher)
        if threads:
            launch.limit_threads(threads)
        return _run(cfg, hardware, tags)
