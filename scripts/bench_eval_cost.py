"""Run the static_eval_slow and static_eval_fast presets through the real pipeline and print
what dev evaluation costs in each, side by side (a Markdown table, ready to quote).

    python scripts/bench_eval_cost.py                      # the full default data
    python scripts/bench_eval_cost.py data.max_rows=800    # extra overrides go to both runs

Both runs use one fresh stage cache, so each pays for its own split, mining and base-model
scores; the data's harvest (docstrings, translations) is put in that cache first, so neither
run's time holds it (it would be the first run's alone). Their MLflow runs land in the usual
store (outputs/mlflow.db under HNPIPE_ROOT, else the checkout), their run dirs under
outputs/bench/<date-time>/<preset>/.
Every number is read from the runs' measured metrics, except the wall time of each whole
run, which this script measures around the subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_processes

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("static_eval_slow", "static_eval_fast")
ROWS = [  # (label, how to get it from a run summary's metrics)
    ("split (train/dev/test rows)",
     lambda m: f"{m['split/train_rows']:.0f}/{m['split/dev_rows']:.0f}/{m['split/test_rows']:.0f}"),
    ("dev evaluations", lambda m: f"{m['eval/count']:.0f}"),
    ("dev queries x corpus", lambda m: f"{m['eval/dev_queries']:.0f} x {m['eval/dev_corpus']:.0f}"),
    ("pure training time (s)", lambda m: f"{m['time/train_pure_s']:.1f}"),
    ("dev eval time in training (s)", lambda m: f"{m['time/eval_in_train_s']:.1f}"),
    ("eval fraction (eval / pure training)", lambda m: f"{m['time/eval_fraction']:.3f}"),
    ("test stage time (s)", lambda m: f"{m['time/test_s']:.1f}"),
    ("test nDCG@10", lambda m: f"{m['test/ndcg_at_10']:.4f}"),
    ("base model nDCG@10", lambda m: f"{m['base/ndcg_at_10']:.4f}"),
]


def run_preset(preset: str, overrides: list[str], cache_dir: Path, run_dir: Path) -> tuple[dict, float]:
    """One real pipeline run; its run summary and the measured wall time of the whole process."""
    args = [sys.executable, "-m", "pipeline", f"+experiment={preset}", f"paths.cache_dir={cache_dir}",
            f"hydra.run.dir={run_dir}", *overrides]
    start = time.perf_counter()
    result = subprocess.run(args, cwd=ROOT, env=os.environ | {"HF_HUB_OFFLINE": "1"},
                            capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{preset} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads((run_dir / "run_summary.json").read_text()), wall_s


def table(results: dict[str, tuple[dict, float]]) -> str:
    lines = [f"| | {' | '.join(results)} |", f"|---|{'---|' * len(results)}"]
    for label, get in ROWS:
        lines.append(f"| {label} | {' | '.join(get(s['metrics']) for s, _ in results.values())} |")
    lines.append(f"| total wall time, whole run (s) | {' | '.join(f'{w:.0f}' for _, w in results.values())} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to both presets")
    overrides = parser.parse_args().overrides
    bench_dir = Path(os.environ.get("HNPIPE_ROOT", ROOT), "outputs", "bench", time.strftime("%Y-%m-%d_%H-%M-%S"))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-eval-cost-") as cache:
        bench_processes.prefetch_harvest([f"+experiment={PRESETS[0]}", *overrides], Path(cache))
        results = {preset: run_preset(preset, overrides, Path(cache), bench_dir / preset)
                   for preset in PRESETS}
    slow_wall, fast_wall = results[PRESETS[0]][1], results[PRESETS[1]][1]
    print(table(results))
    print(f"\nwall-time ratio slow/fast: {slow_wall / fast_wall:.2f}x; "
          f"load average (1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
          f"after {'/'.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    for preset, (summary, _) in results.items():
        print(f"{preset}: MLflow run {summary['run_id']}, run dir {bench_dir / preset}")


if __name__ == "__main__":
    main()
