"""Benchmark: which way of paying for hard negatives gives the best model at the same cost?

In one process and on one data set, it first trains the plain sentence-transformers recipe at
k=8 (SentenceTransformerTrainer + MultipleNegativesRankingLoss on the mined n-tuples, as a user
writes it) for --steps steps over --seeds seeds and measures its seconds: their mean is the
budget every other configuration then spends, each over the same seeds:

  - the plain recipe at k=0 (calibrated on a few steps, then trained for the steps the budget
    buys, as the pipeline does);
  - the pipeline (train.budget_unit=seconds) with live k=8, frozen k=8, bank negatives with the
    base model's mined ids at k=8, and bank negatives re-mined online at k=8 and k=32.

Every model is scored on the same test set by the pipeline's test stage (the split's test part
plus distractors), so rows compare query by query: the table gives test nDCG@10 with its 95 %
bootstrap interval over queries and seeds, s/step, steps, and the paired interval of each row
minus the plain recipe at k=8. It ends with the issue's two targets (the best pipeline row
significantly above plain k=8; bank online at k=32 within 1.3x the s/step of k=0).

    python scripts/bench_budget.py                                   # MiniLM, default data
    python scripts/bench_budget.py data=files data.path=outputs/debian_pairs.jsonl
    python scripts/bench_budget.py --smoke                           # static model, seconds

Extra arguments are Hydra overrides, as for `python -m pipeline`. Nothing is logged to MLflow;
the stage cache and run dirs live in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_step import _machine, _plain_recipe, composed  # noqa: E402  (scripts/ is on the path)

PLAIN = "plain sentence-transformers"
# name -> (k, pipeline loss keys; None = the plain recipe)
CONFIGS = {
    f"{PLAIN}, k=0": (0, None),
    f"{PLAIN}, k=8": (8, None),
    "pipeline live, k=8": (8, {"negatives": "live"}),
    "pipeline frozen, k=8": (8, {"negatives": "frozen"}),
    "pipeline bank (mined ids), k=8": (8, {"negatives": "bank", "bank_mining": "fixed"}),
    "pipeline bank online, k=8": (8, {"negatives": "bank", "bank_mining": "online"}),
    "pipeline bank online, k=32": (32, {"negatives": "bank", "bank_mining": "online"}),
}
REFERENCE = f"{PLAIN}, k=8"


def _plain(cfg, hardware, rows, steps: int, out: Path):
    """The plain recipe trained for `steps` steps on `rows`: (the model, its timer)."""
    from omegaconf import OmegaConf

    from pipeline.stages import models
    from pipeline.stages.calibration import StepTimer

    model = models.load_model(cfg.model, device=hardware.model_device)
    timer = StepTimer()
    run_cfg = OmegaConf.merge(cfg, {"train": {"max_steps": steps}})
    _plain_recipe(run_cfg, hardware, model, rows, out, timer).train()
    return model, timer


def _scores(model, test, cfg) -> dict[str, float]:
    """Per-query nDCG@10 on the common test set, through the pipeline's test stage."""
    from pipeline.stages import evaluate

    scores = evaluate.score(model, test, cfg.eval.batch_size, cfg.eval.query_prompt, cfg.eval.corpus_prompt)
    return dict(zip(scores.query_ids, scores.values["ndcg_at_10"].tolist()))


def prepare(args, tmp: Path):
    """(overrides, config, hardware, the training rows by k (mined by the pipeline's cached ranking),
    the test set): split and mining, once."""
    from pipeline import driver
    from pipeline.result import RunResult
    from pipeline.stages import evaluate
    from pipeline.stages.stage import Context

    overrides = [f"model={args.model}", f"train.batch_size={args.batch}", f"model.max_seq_length={args.max_seq_length}",
                 f"train.learning_rate={args.lr}", "train.max_steps=-1", "eval=none",
                 f"paths.cache_dir={tmp / 'cache'}", f"paths.run_dir={tmp / 'prep'}", *args.overrides]
    rows = {}
    for k in (0, 8, 32):
        cfg, hardware = composed([*overrides, f"k={k}"])
        ctx = Context(cfg, hardware, RunResult(tmp / "prep"))
        splits, model, trainings = driver.prepare(ctx)
        (name,) = splits  # one data source
        rows[k] = trainings[name].rows
        if k == 0:
            test = evaluate.build_test_set(cfg.eval, splits[name], cfg.split.seed)
            base_cfg, base_hardware = cfg, hardware
        del model
    return overrides, base_cfg, base_hardware, rows, test


def run(args, tmp: Path) -> tuple[list[dict], float]:
    from pipeline import driver
    from pipeline.result import RunResult

    overrides, cfg, hardware, rows, test = prepare(args, tmp)

    def plain(k: int, seed: int, steps: int | None = None, budget_s: float = 0.0) -> tuple[int, float, dict]:
        """(steps, seconds spent, per-query scores) of the plain recipe; steps=None: calibrate k on a
        few steps, then train for the steps budget_s buys, as the pipeline does."""
        plain_cfg, _ = composed([*overrides, f"k={k}", f"seed={seed}"])
        if steps is None:
            _, probe = _plain(plain_cfg, hardware, rows[k], 4, tmp / "probe")
            steps = max(1, int(budget_s / statistics.median(probe.seconds[1:])))
        model, timer = _plain(plain_cfg, hardware, rows[k], steps, tmp / f"plain-{k}-{seed}")
        return steps, sum(timer.seconds), _scores(model, test, cfg)

    def pipeline(k: int, seed: int, keys: dict, budget_s: float) -> tuple[int, float, dict]:
        run_dir = tmp / "runs" / f"{k}-{seed}-{'-'.join(keys.values())}"
        loss_keys = [f"loss.{key}={value}" for key, value in keys.items()]
        run_cfg, run_hardware = composed([*overrides, f"k={k}", f"seed={seed}", "train.budget_unit=seconds",
                                          f"train.budget={budget_s}", *loss_keys, f"paths.run_dir={run_dir}"])
        result = RunResult(run_dir)
        driver.run(run_cfg, run_hardware, result)
        per_query = json.loads((result.run_dir / "test" / "per_query.json").read_text())["queries"]
        return (int(result.metrics["train/steps"]), result.metrics["spent/seconds"],
                {qid: values["ndcg_at_10"] for qid, values in per_query.items()})

    results: list[dict] = []

    def record(name: str, seed: int, outcome: tuple[int, float, dict[str, float]]) -> None:
        # s/step: each step from its start to its end, both timed the same way (StepTimer, Spend)
        steps, spent_s, scores = outcome
        results.append({"config": name, "seed": seed, "steps": steps, "spent_s": spent_s,
                        "s_per_step": spent_s / steps, "scores": scores})
        print(f"  {name} seed={seed}: {steps} steps, {spent_s:.1f} s, nDCG@10 {statistics.fmean(scores.values()):.4f}",
              file=sys.stderr, flush=True)

    # The budget: what the plain recipe at k=8 spends on its steps, the mean over its own rows' seeds.
    for seed in args.seeds:
        record(REFERENCE, seed, plain(8, seed, steps=args.steps))
    budget_s = statistics.fmean(row["spent_s"] for row in results)
    print(f"budget: {budget_s:.1f} s = the plain recipe at k=8 for {args.steps} steps", file=sys.stderr, flush=True)
    for name, (k, keys) in CONFIGS.items():
        for seed in args.seeds if name != REFERENCE else ():
            record(name, seed, plain(k, seed, budget_s=budget_s) if keys is None else pipeline(k, seed, keys, budget_s))
    return results, budget_s


def table(results: list[dict], budget_s: float) -> str:
    import numpy as np

    from pipeline.report.stats import bootstrap_mean, paired_bootstrap, stack

    by_config = {name: [row for row in results if row["config"] == name] for name in CONFIGS}
    queries = list(results[0]["scores"])
    matrix = {name: stack([run["scores"] for run in runs], queries) for name, runs in by_config.items()}
    lines = [f"budget: {budget_s:.1f} wall seconds of training per job (plain k=8's, its seeds' mean)", "",
             "| configuration | steps (mean) | seconds spent (mean) | s/step (median) | test nDCG@10 | 95 % CI "
             "| Δ vs plain k=8 | Δ 95 % CI | significant |", "|---|---|---|---|---|---|---|---|---|"]
    differences = {}
    for name, runs in by_config.items():
        interval = bootstrap_mean(matrix[name])
        cells = ["", "", ""]
        if name != REFERENCE:
            d = differences[name] = paired_bootstrap(matrix[name], matrix[REFERENCE])
            cells = [f"{d.mean:+.4f}", f"[{d.low:+.4f}, {d.high:+.4f}]", "yes" if d.significant else "no"]
        lines.append(f"| {name} | {statistics.fmean(r['steps'] for r in runs):.1f} "
                     f"| {statistics.fmean(r['spent_s'] for r in runs):.1f} "
                     f"| {statistics.median(r['s_per_step'] for r in runs):.3f} | {interval.mean:.4f} "
                     f"| [{interval.low:.4f}, {interval.high:.4f}] | " + " | ".join(cells) + " |")
    pipeline_rows = {name: d for name, d in differences.items() if name.startswith("pipeline")}
    best = max(pipeline_rows, key=lambda name: float(np.mean(matrix[name])))
    d = pipeline_rows[best]
    lines += ["", f"target: the best pipeline row ({best}) against {REFERENCE} at equal seconds: Δ {d.mean:+.4f} "
              f"[{d.low:+.4f}, {d.high:+.4f}] -> {'met' if d.low > 0 else 'not met'} (the interval must exclude 0)"]
    s = {name: statistics.median(r["s_per_step"] for r in runs) for name, runs in by_config.items()}
    ratio = s["pipeline bank online, k=32"] / s[f"{PLAIN}, k=0"]
    lines.append(f"target: bank online at k=32 costs {ratio:.2f}x the s/step of the plain recipe at k=0 "
                 f"-> {'met' if ratio <= 1.3 else 'not met'} (at most 1.3x)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="model config (minilm, static, hub)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="the plain recipe's k=8 steps that set the budget")
    parser.add_argument("--lr", type=float, default=2e-5, help="2e-5 suits MiniLM, 0.05 StaticEmbedding")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--smoke", action="store_true", help="static model, tiny data, one seed: seconds")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=files data.path=...")
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if args.smoke:
        args.model, args.batch, args.max_seq_length, args.steps, args.lr, args.seeds = "static", 8, 16, 2, 0.05, [1]
        args.overrides = ["data.max_rows=300", "eval.test_distractors=50", "miner.range_max=40", *args.overrides]

    import datasets

    datasets.disable_progress_bars()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
        print(f"model={args.model}, batch {args.batch}, max_seq_length {args.max_seq_length}, learning rate "
              f"{args.lr}, seeds {','.join(map(str, args.seeds))}; overrides: {' '.join(args.overrides) or 'none'}")
        results, budget_s = run(args, Path(tmp))
        print(table(results, budget_s))
    print(f"\nmachine: {_machine()}; load average (1/5/15 min) before "
          f"{'/'.join(f'{x:.1f}' for x in load_before)}, after {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
