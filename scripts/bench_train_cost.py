"""Measured cost of a training step beside the cost model's prediction.

Trains a few real steps of mnrl at k = 0, 8, 64 and hn_only at k = 64 on stdlib
docstring pairs (negatives: random other positives, as in plan mode) and prints a
markdown table: texts and padded tokens per step (predicted), the score matrix, and
measured s/step and texts/s. Ratios are against mnrl at k = 0, so a reader sees how
closely measured cost follows texts embedded, and what hn_only saves.

    python scripts/bench_train_cost.py                   # static model, batch 32 (minutes on 2 cores)
    python scripts/bench_train_cost.py --model minilm    # MiniLM, batch 4
    python scripts/bench_train_cost.py --model minilm --batch 64 --hardware cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CASES = [("mnrl", 0), ("mnrl", 8), ("mnrl", 64), ("hn_only", 64)]


def _config(args, loss: str, k: int):
    from pipeline.config.rules import validate
    from pipeline.hydra_ext.compose import compose

    cfg = compose([f"model={args.model}", f"loss={loss}", f"k={k}", f"train.batch_size={args.batch}",
                   f"model.max_seq_length={args.max_seq_length}", f"hardware={args.hardware}"])
    return cfg, validate(cfg)


def _pairs(rows: int):
    import datasets

    from pipeline.stages.docstrings import harvest

    return datasets.Dataset.from_list(harvest([], 4, 40, 1000)[:rows])


def measure(args) -> list[dict]:
    """One row per case: the cost model's figures and the measured step times."""
    import datasets

    from pipeline.stages import calibration, cost, models
    from pipeline.stages.mine import stand_in_negatives

    datasets.disable_progress_bars()
    pairs = _pairs(max(args.batch * (args.steps + 2), max(k for _, k in CASES) + 1))
    results = []
    for loss, k in CASES:
        cfg, hardware = _config(args, loss, k)
        model = models.load_model(cfg.model, device=hardware.model_device)
        train_ds = stand_in_negatives(pairs, k, cfg.seed) if k else pairs
        figures = cost.predict(cfg, len(train_ds), cost.per_step(cfg, model, train_ds))
        seconds = calibration.calibrate(cfg, hardware, model, train_ds, args.steps).seconds
        s_per_step = statistics.median(seconds)
        results.append({"loss": loss, "k": k, "figures": figures, "s_per_step": s_per_step,
                        "spread": (min(seconds), max(seconds))})
        print(f"  {loss} k={k}: {s_per_step:.3f} s/step over {len(seconds)} steps", file=sys.stderr)
    return results


def table(args, results: list[dict]) -> str:
    import torch

    base = results[0]
    texts0 = base["figures"]["cost/texts_per_step"]
    tokens0 = base["figures"]["cost/tokens_per_step_padded"]
    lines = [
        f"model={args.model}, batch {args.batch}, max_seq_length {args.max_seq_length}, "
        f"hardware={args.hardware}, {args.steps} timed steps per row (median, after 1 warm-up); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}",
        "",
        "| loss | k | texts/step | predicted × (texts) | padded tokens/step | predicted × (tokens) "
        "| scores | measured s/step (min–max) | measured × | measured texts/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        f = row["figures"]
        lo, hi = row["spread"]
        lines.append(
            f"| {row['loss']} | {row['k']} | {f['cost/texts_per_step']:,} "
            f"| {f['cost/texts_per_step'] / texts0:.1f} | {f['cost/tokens_per_step_padded']:,.0f} "
            f"| {f['cost/tokens_per_step_padded'] / tokens0:.1f} "
            f"| {f['cost/score_rows']}×{f['cost/score_cols']:,} "
            f"| {row['s_per_step']:.3f} ({lo:.3f}–{hi:.3f}) | {row['s_per_step'] / base['s_per_step']:.1f} "
            f"| {f['cost/texts_per_step'] / row['s_per_step']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("static", "minilm"), default="static")
    parser.add_argument("--batch", type=int, help="default: 32 for static, 4 for minilm")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (after 1 warm-up)")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--hardware", choices=("cpu", "cuda", "tpu", "auto"), default="cpu")
    args = parser.parse_args()
    args.batch = args.batch or (32 if args.model == "static" else 4)
    print(table(args, measure(args)))


if __name__ == "__main__":
    main()
