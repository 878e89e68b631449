"""Benchmark: what a hard-negative training step costs with each step-embedding mechanism.

Speed table (--table speed): for each k, on one mined training set and the same batches, in
one process, it trains a few real steps of
  (a) the plain sentence-transformers recipe, as a user writes it: SentenceTransformerTrainer
      with MultipleNegativesRankingLoss on the (anchor, positive, negative_1..k) n-tuples;
  (b) this pipeline's trainer (plan mode's calibration, the run's own trainer and loss) with
      loss.negatives=live and each mechanism: length-aware, dedupe, both; then frozen and
      bank negatives (with both);
and prints the measured median s/step, the texts and tokens each step fed the model, and
steps/s against (a). Bank refreshes are timed once (a real refresh of the whole corpus)
and added per step at one refresh every --refresh steps.

Sampler table (--table sampler): what drawing every batch from one source costs. The run's
own sources (default: data=translations, seven languages) go through sentence-transformers'
multi-dataset sampler (proportional, round_robin) and, concatenated, through the one-source
sampler; it prints the seconds each takes to draw a batch beside a measured training step.

Quality table (--table quality): each mode trained through the real pipeline (split, mining,
training, test) for the same steps, over several seeds: test nDCG@10, mean and spread.

    python scripts/bench_step.py --table speed                          # MiniLM, default data
    python scripts/bench_step.py --table speed --ks 0,8 data=files data.path=outputs/debian_pairs.jsonl
    python scripts/bench_step.py --table quality                        # static model, k=8, 3 seeds
    python scripts/bench_step.py --table speed --model static --batch 1024 --ks 0,8 \
        --recipes "plain sentence-transformers,live,length-aware + dedupe"   # the static case
    python scripts/bench_step.py --table sampler --model static --batch 512  # several sources

Extra arguments are Hydra overrides, as for `python -m pipeline`. Nothing is logged to
MLflow; the stage cache and run dirs live in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PLAIN = "plain sentence-transformers"
# Pipeline rows: the loss keys each sets (every key set, so conf defaults do not matter).
MODES = {
    "live": {"negatives": "live", "length_aware": False, "dedupe": False},
    "length-aware": {"negatives": "live", "length_aware": True, "dedupe": False},
    "dedupe": {"negatives": "live", "length_aware": False, "dedupe": True},
    "length-aware + dedupe": {"negatives": "live", "length_aware": True, "dedupe": True},
    "frozen (+ both)": {"negatives": "frozen", "length_aware": True, "dedupe": True},
    "bank (+ both)": {"negatives": "bank", "length_aware": True, "dedupe": True},
}


def composed(overrides: list[str]):
    """(the validated config of `python -m pipeline OVERRIDES`, its hardware); a refusal exits
    with its one message."""
    from pipeline.config.rules import validate
    from pipeline.errors import PipelineError
    from pipeline.hydra_ext.compose import compose

    try:
        cfg = compose(overrides)
        return cfg, validate(cfg)
    except PipelineError as exc:
        sys.exit(f"error: {exc}")


def _plain_recipe(cfg, hardware, model, train_ds, out: Path, timer):
    """(a): MNRL on the n-tuples with sentence-transformers' own trainer, nothing of ours but the
    timer; the same seed and sampler as the pipeline, so the same batches."""
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), per_device_train_batch_size=cfg.train.batch_size, max_steps=cfg.train.max_steps,
        learning_rate=cfg.train.learning_rate, batch_sampler=BatchSamplers.NO_DUPLICATES, seed=cfg.seed,
        data_seed=cfg.seed, save_strategy="no", report_to="none", disable_tqdm=True,
        **hardware.trainer_flags())
    return SentenceTransformerTrainer(model=model, args=args, train_dataset=train_ds,
                                      loss=MultipleNegativesRankingLoss(model), callbacks=[timer])


def _time_plain(cfg, hardware, train_ds, steps: int, out: Path) -> dict:
    from pipeline.losses.step_embedding import StepCounts, counting_forwards
    from pipeline.stages import models
    from pipeline.stages.calibration import StepTimer

    model = models.load_model(cfg.model, device=hardware.model_device)
    timer, counts = StepTimer(), StepCounts()
    trainer = _plain_recipe(cfg, hardware, model, train_ds, out, timer)
    with counting_forwards(model, counts):
        trainer.train()
    every = steps + 1  # the counts cover the warm-up step too
    return {"seconds": timer.seconds[1:], "cpu": timer.cpu_seconds[1:], "with_grad": counts.texts_with_grad / every,
            "without_grad": counts.texts_without_grad / every, "real": counts.tokens_real / every,
            "padded": counts.tokens_padded / every}


def _time_mode(cfg, hardware, train_ds, bank, steps: int) -> dict:
    from pipeline.stages import calibration, models

    model = models.load_model(cfg.model, device=hardware.model_device)
    timed = calibration.calibrate(cfg, hardware, model, train_ds, steps, bank)
    step = timed.step
    return {"seconds": timed.seconds, "cpu": timed.cpu_seconds, "with_grad": step["step/texts_with_grad"],
            "without_grad": step["step/texts_without_grad"], "real": step["step/tokens_real"],
            "padded": step["step/tokens_padded"]}


def _refresh_seconds(cfg, hardware, bank) -> tuple[float, float]:
    """(wall, CPU) seconds of one real refresh of the whole bank with the base model."""
    from pipeline.losses.memory_bank import CorpusMemoryBank
    from pipeline.stages import models

    model = models.load_model(cfg.model, device=hardware.model_device)
    memory = CorpusMemoryBank(bank.corpus, bank.vectors, encode_batch_size=cfg.miner.batch_size)
    cpu_start = time.process_time()
    memory.refresh(model)
    return memory.refresh_seconds, time.process_time() - cpu_start


def speed(args, overrides: list[str], tmp: Path) -> list[dict]:
    """One row per (k, recipe): measured seconds per step and what each step fed the model."""
    from omegaconf import OmegaConf

    from pipeline import driver
    from pipeline.result import RunResult
    from pipeline.stages import mine
    from pipeline.stages.stage import Context

    rows, refresh_s = [], None
    for k in args.ks:
        cfg, hardware = composed([f"model={args.model}", f"k={k}", f"train.batch_size={args.batch}",
                                  f"model.max_seq_length={args.max_seq_length}", f"train.max_steps={args.steps + 1}",
                                  f"paths.cache_dir={tmp / 'cache'}", *overrides])
        splits, model, trainings = driver.prepare(Context(cfg, hardware, RunResult(tmp / "run")))
        (source,) = splits  # one data source
        training = trainings[source]
        if PLAIN in args.recipes:
            rows.append({"k": k, "recipe": PLAIN,
                         **_time_plain(cfg, hardware, training.rows, args.steps, tmp / "plain")})
            print(f"  k={k} {PLAIN}: {statistics.median(rows[-1]['seconds']):.3f} s/step", file=sys.stderr, flush=True)
        for name, keys in MODES.items():
            if name not in args.recipes or (k == 0 and keys["negatives"] != "live"):  # k=0: no negatives to move
                continue
            mode_cfg = OmegaConf.merge(cfg, {"loss": keys | {"bank_refresh_steps": args.refresh}})
            bank = None
            if keys["negatives"] == "bank":  # the mined set is cached: this only starts the bank
                run_ctx = Context(mode_cfg, hardware, RunResult(tmp / "run"))
                bank = mine.run(run_ctx, splits[source]["train"], model).bank
                refresh_s = refresh_s or _refresh_seconds(cfg, hardware, bank)
            row = {"k": k, "recipe": name, **_time_mode(mode_cfg, hardware, training.rows, bank, args.steps)}
            if bank is not None:
                row |= {"refresh_s": refresh_s[0], "refresh_cpu": refresh_s[1], "corpus": len(bank.corpus)}
            rows.append(row)
            print(f"  k={k} {name}: {statistics.median(row['seconds']):.3f} s/step", file=sys.stderr, flush=True)
    return rows


def _per_step(row: dict, refresh: int) -> tuple[float, float]:
    """(wall, CPU) median seconds per step, a bank's refreshes added at one every `refresh` steps."""
    wall, cpu = statistics.median(row["seconds"]), statistics.median(row["cpu"])
    if "refresh_s" in row and refresh:
        wall, cpu = wall + row["refresh_s"] / refresh, cpu + row["refresh_cpu"] / refresh
    return wall, cpu


def speed_table(args, rows: list[dict]) -> str:
    lines = ["| k | recipe | wall s/step, median (min–max) | CPU s/step | steps/s × plain, wall / CPU "
             "| wall / CPU s/step with bank refreshes | texts/step with grad + without | padded tokens/step "
             "| real/padded |",
             "|---|---|---|---|---|---|---|---|---|"]
    plain = {row["k"]: _per_step(row, 0) for row in rows if row["recipe"] == PLAIN}
    for row in rows:
        wall, cpu = _per_step(row, 0)
        with_refresh = "–"
        if "refresh_s" in row and args.refresh:
            with_refresh = "{:.3f} / {:.3f}".format(*_per_step(row, args.refresh))
        ratio = "–"
        if row["k"] in plain:
            ratio = f"{plain[row['k']][0] / wall:.2f} / {plain[row['k']][1] / cpu:.2f}"
        lines.append(
            f"| {row['k']} | {row['recipe']} | {wall:.3f} ({min(row['seconds']):.3f}–{max(row['seconds']):.3f}) "
            f"| {cpu:.3f} | {ratio} | {with_refresh} "
            f"| {row['with_grad']:,.0f} + {row['without_grad']:,.0f} | {row['padded']:,.0f} "
            f"| {row['real'] / row['padded']:.2f} |")
    banks = [row for row in rows if "refresh_s" in row]
    if banks:
        lines.append(f"\nbank refresh: {banks[0]['refresh_s']:.1f} s measured for {banks[0]['corpus']:,} corpus "
                     f"texts, one every {args.refresh} steps" if args.refresh else "\nbank: never refreshed")
    lines += _targets(args, rows, plain)
    return "\n".join(lines)


def _targets(args, rows: list[dict], plain: dict[int, float]) -> list[str]:
    """The issue's two targets, where this run has the rows for them."""
    found = {(row["k"], row["recipe"]): row for row in rows}
    lines = []
    both, base = found.get((8, "length-aware + dedupe")), found.get((8, PLAIN))
    if both and base:
        wall, cpu = _per_step(both, 0)
        lines.append(f"target: length-aware + dedupe at k=8: {plain[8][0] / wall:.2f}x (wall) / "
                     f"{plain[8][1] / cpu:.2f}x (CPU) the plain recipe's steps/s (target >= 1.3 where "
                     f"real/padded < 0.7; here {base['real'] / base['padded']:.2f})")
    bank = found.get((max(args.ks), "bank (+ both)"))
    if bank and 0 in plain:
        wall, cpu = _per_step(bank, args.refresh)
        lines.append(f"target: bank at k={bank['k']} with refreshes / plain recipe at k=0: {wall / plain[0][0]:.2f}x "
                     f"(wall) / {cpu / plain[0][1]:.2f}x (CPU) the s/step (target <= 1.3)")
    return lines


def sampler(args, overrides: list[str], tmp: Path) -> list[dict]:
    """One row per sampler: seconds per batch drawn over one epoch of every source's rows, and
    the seconds of a real training step on the several sources."""
    import datasets
    from omegaconf import OmegaConf

    from pipeline import driver
    from pipeline.result import RunResult
    from pipeline.stages import calibration, train
    from pipeline.stages.stage import Context

    cfg, hardware = composed([f"model={args.model}", "k=0", f"train.batch_size={args.batch}",
                              f"model.max_seq_length={args.max_seq_length}", "data=translations",
                              f"paths.cache_dir={tmp / 'cache'}", *overrides])
    _, model, trainings = driver.prepare(Context(cfg, hardware, RunResult(tmp / "run")))
    if len(trainings) < 2:
        sys.exit("error: --table sampler needs several data sources (data=translations or data=multi)")
    rows, _ = train.trainer_sets(trainings)
    step = statistics.median(calibration.calibrate(cfg, hardware, model, rows, args.steps).seconds)
    out = []
    for label, data, kind in (("one source (the rows concatenated)", datasets.concatenate_datasets(list(rows.values())),
                               "proportional"), ("proportional", rows, "proportional"),
                              ("round_robin", rows, "round_robin")):
        sampler_cfg = OmegaConf.merge(cfg, {"train": {"multi_dataset_sampler": kind}})
        trainer, _ = train.trainer_for(sampler_cfg, hardware, model, data, None, tmp / "sampler")
        batches = trainer.get_train_dataloader().batch_sampler
        start = time.perf_counter()
        count = sum(1 for _ in batches)
        out.append({"sampler": label, "batches": count, "s_per_batch": (time.perf_counter() - start) / count,
                    "step": step, "sources": len(rows)})
    return out


def sampler_table(rows: list[dict]) -> str:
    lines = [f"{rows[0]['sources']} sources; a training step on them: {rows[0]['step']:.3f} s (median)", "",
             "| sampler | batches an epoch | ms to draw a batch | share of a step |", "|---|---|---|---|"]
    lines += [f"| {row['sampler']} | {row['batches']} | {1000 * row['s_per_batch']:.3f} "
              f"| {row['s_per_batch'] / row['step']:.2%} |" for row in rows]
    return "\n".join(lines)


def quality(args, overrides: list[str], tmp: Path) -> list[dict]:
    """Each mode through the real pipeline (driver.run: split, mining, training, test), per seed."""
    from pipeline import driver
    from pipeline.result import RunResult

    rows = []
    for number, name in enumerate(recipe for recipe in args.recipes if recipe in MODES):
        keys = MODES[name]
        for seed in args.seeds:
            loss = [f"loss.{key}={str(value).lower()}" for key, value in keys.items()]
            cfg, hardware = composed([f"model={args.quality_model}", f"k={args.quality_k}", f"seed={seed}",
                                      f"train.batch_size={args.batch}", f"model.max_seq_length={args.max_seq_length}",
                                      f"train.max_steps={args.quality_steps}",
                                      f"train.learning_rate={args.quality_lr}", "eval=none",
                                      f"loss.bank_refresh_steps={args.refresh}", *loss,
                                      f"paths.cache_dir={tmp / 'cache'}",
                                      f"paths.run_dir={tmp / 'runs' / f'{number}-{seed}'}", *overrides])
            result = RunResult(tmp / "runs" / f"{number}-{seed}")
            driver.run(cfg, hardware, result)
            metrics = result.metrics
            rows.append({"mode": name, "seed": seed, "ndcg": metrics["test/ndcg_at_10"],
                         "base": metrics["base/ndcg_at_10"], "s_per_step": metrics["train/s_per_step"]})
            print(f"  {name} seed={seed}: nDCG@10 {rows[-1]['ndcg']:.4f}", file=sys.stderr, flush=True)
    return rows


def quality_table(rows: list[dict]) -> str:
    lines = ["| mode | test nDCG@10, mean ± sd | Δ vs live | per seed | base nDCG@10 | s/step (mean) |",
             "|---|---|---|---|---|---|"]
    by_mode: dict[str, list[dict]] = {}
    for row in rows:
        by_mode.setdefault(row["mode"], []).append(row)
    live = statistics.mean(r["ndcg"] for r in by_mode["live"]) if "live" in by_mode else None
    for mode, runs in by_mode.items():
        scores = [r["ndcg"] for r in runs]
        spread = f"{statistics.stdev(scores):.4f}" if len(scores) > 1 else "n/a (1 seed)"
        delta = f"{statistics.mean(scores) - live:+.4f}" if live is not None else "–"
        lines.append(f"| {mode} | {statistics.mean(scores):.4f} ± {spread} | {delta} "
                     f"| {', '.join(f'{s:.4f}' for s in scores)} | {statistics.mean(r['base'] for r in runs):.4f} "
                     f"| {statistics.mean(r['s_per_step'] for r in runs):.3f} |")
    return "\n".join(lines)


def _machine() -> str:
    import torch

    gpu = f"CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {gpu}")


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line's settings (scripts/device_check.py builds its speed rows from them too)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", choices=("speed", "sampler", "quality"), required=True)
    parser.add_argument("--model", default="minilm", help="speed table's model config (minilm, static, hub)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--ks", default="0,8,32,64", help="speed table: comma-separated k")
    parser.add_argument("--steps", type=int, default=3, help="speed table: timed steps per row, after 1 warm-up")
    parser.add_argument("--refresh", type=int, default=100, help="bank: steps between refreshes (0 = never)")
    parser.add_argument("--recipes", default=",".join([PLAIN, *MODES]),
                        help=f"comma-separated, of: {', '.join([PLAIN, *MODES])} (the quality table "
                             "trains the pipeline's modes only)")
    parser.add_argument("--quality-model", default="static")
    parser.add_argument("--quality-k", type=int, default=8)
    parser.add_argument("--quality-steps", type=int, default=100)
    parser.add_argument("--quality-lr", type=float, default=0.05, help="0.05 suits StaticEmbedding; 2e-5 MiniLM")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=files data.path=... data.max_rows=600")
    args = parser.parse_args(argv)
    args.ks = [int(k) for k in args.ks.split(",")]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.recipes = args.recipes.split(",")
    if unknown := set(args.recipes) - {PLAIN, *MODES}:
        sys.exit(f"error: --recipes {', '.join(sorted(unknown))}: not one of {PLAIN}, {', '.join(MODES)}")
    return args


def main() -> None:
    args = parse(sys.argv[1:])

    import datasets

    datasets.disable_progress_bars()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        if args.table == "speed":
            print(f"model={args.model}, batch {args.batch}, max_seq_length {args.max_seq_length}, {args.steps} "
                  f"timed steps per row (median, after 1 warm-up); overrides: {' '.join(args.overrides) or 'none'}")
            print(speed_table(args, speed(args, args.overrides, Path(tmp))))
        elif args.table == "sampler":
            print(f"model={args.model}, batch {args.batch}, k=0; overrides: {' '.join(args.overrides) or 'none'}")
            print(sampler_table(sampler(args, args.overrides, Path(tmp))))
        else:
            print(f"model={args.quality_model}, k={args.quality_k}, batch {args.batch}, {args.quality_steps} steps at "
                  f"learning rate {args.quality_lr}, bank refresh every {args.refresh} steps, seeds "
                  f"{','.join(map(str, args.seeds))}; overrides: {' '.join(args.overrides) or 'none'}")
            print(quality_table(quality(args, args.overrides, Path(tmp))))
    print(f"\nmachine: {_machine()}; load average (1/5/15 min) before "
          f"{'/'.join(f'{x:.1f}' for x in load_before)}, after {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
