"""Plan mode (`plan=true`): price a run before paying for it.

Prints one line per job: which stages would run or hit the cache, the cost model's figures,
and a training-time estimate from a few real training steps on this hardware. The driver
prepares its inputs exactly as a run does (pipeline.driver, plan=True), but never mines,
never trains the run's model for real, never opens an MLflow run.

Its training-time estimate comes from pipeline.stages.calibration, bounded whatever the run's
size, and the line says how it was found.
"""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.losses import negatives_mode
from pipeline.stages import budget, cost, embed, evaluate, mine, split
from pipeline.stages.calibration import estimate, merged, padded_tokens, refresh_seconds
from pipeline.stages.mine import TrainingSet
from pipeline.stages.stage import Context
from pipeline.stages.train import per_step_mix, trainer_sets


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def statuses(ctx: Context) -> str:
    """Which cached stages the run would build and which it finds (the split: built by now)."""
    stages = [split.STAGE, *((embed.STAGE, mine.STAGE) if ctx.cfg.k > 0 else ()), evaluate.BASE]
    state = {stage.name: "cached" if ctx.is_cached(stage) else "would run" for stage in stages}
    if ctx.result.tags.get("cache/split_hit") == "false":
        state["split"] = "would run"
    return ", ".join(f"{name} {status}" for name, status in state.items())


def line(ctx: Context, model, trainings: dict[str, TrainingSet]) -> str:
    """The plan line for the run `ctx` (the split is built into the cache if absent: cost needs data)."""
    cfg, hardware = ctx.cfg, ctx.hardware
    step = per_step_mix(cfg, model, trainings)
    rows, banks = sum(len(t.rows) for t in trainings.values()), [t.bank for t in trainings.values() if t.bank]
    negatives = next(iter(trainings.values())).negatives
    s_per_step, how = estimate(cfg, hardware, model, *trainer_sets(trainings), padded_tokens(step))
    each_s = sum(refresh_seconds(model, bank.corpus, cfg.miner.batch_size) for bank in banks) \
        if cfg.loss.get("bank_refresh_steps") else 0.0
    bought = ""
    if cfg.train.budget is not None:
        unit = cfg.train.budget_unit
        per_step, per_refresh = ((s_per_step, each_s) if unit == "seconds"
                                 else (budget.step_cost(cfg, step), budget.refresh_cost(cfg, step)))
        steps = budget.steps_bought(cfg, per_step, per_refresh)
        cfg = merged(cfg, {"train": {"max_steps": steps}})
        bought = f"train.budget={cfg.train.budget:g} {unit} buys {steps:,} steps at {per_step:,.4g} {unit} each | "
    figures = cost.predict(cfg, rows, step)
    train_s = s_per_step * figures["cost/steps"]
    refreshes = ""
    if banks and figures["cost/bank_refreshes"]:
        train_s += figures["cost/bank_refreshes"] * each_s
        refreshes = (f", plus {figures['cost/bank_refreshes']} bank refreshes of "
                     f"{figures['cost/bank_corpus']:,} texts at {each_s:.3g} s each (timed on a sample)")
    return (f"plan k={cfg.k} loss={cfg.loss.name} batch={cfg.train.batch_size} "
            f"model={cfg.model.kind} hardware={hardware.device}/{hardware.precision} | "
            f"stages: {statuses(ctx)}, train would run, test would run | "
            f"per step (predicted): {figures['cost/texts_per_step']:,} texts, "
            f"{figures['cost/tokens_per_step_real']:,.0f} tokens real / "
            f"{figures['cost/tokens_per_step_padded']:,.0f} padded, scores "
            f"{figures['cost/score_rows']:,}x{figures['cost/score_cols']:,}{_mode(cfg, figures)} | "
            f"{bought}{figures['cost/steps']:,} steps ({figures['cost/steps_per_epoch']:,}/epoch, "
            f"{figures['cost/texts_per_epoch']:,} texts/epoch) | calibration ({negatives} "
            f"negatives, {how}): {s_per_step:.3g} s/step{refreshes}, training estimate "
            f"{_minutes(train_s)} (dev evaluation not included)")


def _mode(cfg: DictConfig, figures: dict) -> str:
    """What this run's step embeds instead of the plain recipe's (a wrapped loss only)."""
    if negatives_mode(cfg) is None:
        return ""
    options = [name for name in ("length_aware", "dedupe") if cfg.loss[name]]
    return (f"; this run (negatives={negatives_mode(cfg)}{''.join(', ' + o for o in options)}): "
            f"{figures['cost/step_texts_with_grad']:,.0f} texts with gradients + "
            f"{figures['cost/step_texts_without_grad']:,.0f} without, "
            f"{figures['cost/step_tokens_real']:,.0f} tokens real / "
            f"{figures['cost/step_tokens_padded']:,.0f} padded")
