"""What a second process buys: the same run at 1 and at N processes, side by side.

Runs the pipeline twice through the real CLI, each with a fresh stage cache: once as one
process (`python -m pipeline`), once as N (`torchrun --standalone --nproc_per_node N -m
pipeline`), and prints, from the runs' measured metrics, mining's encode time, seconds
per training step, the test stage's time and the whole run's, with the N-process / 1-process
ratios. On a CPU-only machine N processes share the same cores (each gets cores / N
threads), so the ratios show the overhead of coordinating processes, not a speed-up; on N
GPUs (hardware=cuda) they show the speed-up. The N-process run takes batch / N per process,
so both train the same global batch per step.

    python scripts/bench_processes.py                                  # static model, 2 processes
    python scripts/bench_processes.py --model minilm data.max_rows=1500
    python scripts/bench_processes.py --processes 4 hardware=cuda model=minilm   # on 4 GPUs

Extra arguments are Hydra overrides for both runs. MLflow runs land in a temporary store.
The data's harvest (docstrings, translations) is put in each run's cache before it starts, so
neither run's time holds it: it is the same, 18 s on 2 cores, however many processes run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SMALL = ["data.max_rows=1200", "train.max_steps=8", "train.batch_size=16", "eval=none", "k=4",
         "eval.test_distractors=300"]
ROWS = [("mining encode (s)", "time/embed_s"), ("training s/step", "train/s_per_step"),
        ("test stage (s)", "time/test_s"), ("whole run (s)", "time/total_s")]


def torchrun(processes: int) -> list[str]:
    """The launcher of `processes` processes on this machine, from this Python's environment."""
    return [str(Path(sys.executable).with_name("torchrun")), "--standalone", f"--nproc_per_node={processes}"]


def prefetch_harvest(overrides: list[str], cache_dir: Path) -> None:
    """Harvest the data source of `python -m pipeline OVERRIDES` into the stage cache at
    `cache_dir`, in this process, if it is a source that is harvested."""
    from pipeline.cache import StageCache
    from pipeline.hydra_ext.compose import compose
    from pipeline.stages import sources

    data = compose(overrides).data
    if data.source in sources.HARVESTED:
        sources.harvested(data, StageCache(cache_dir))


def launch(command: list[str], overrides: list[str], root: Path,
           timeout: float | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """One real run of the CLI with its outputs, stage cache and MLflow store under `root`: the
    finished process and the wall seconds around it, the data harvested beforehand
    (scripts/device_check.py runs it too)."""
    cache = root / "outputs" / "cache"
    overrides = [*overrides, f"paths.cache_dir={cache}"]
    prefetch_harvest(overrides, cache)
    env = os.environ | {"HNPIPE_ROOT": str(root), "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    result = subprocess.run([*command, "-m", "pipeline", *overrides], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    return result, time.perf_counter() - start


def summary(root: Path) -> dict:
    """The run summary (metrics, tags) of the one run under `root`."""
    (path,) = root.glob("outputs/runs/*/*/run_summary.json")
    return json.loads(path.read_text())


def run(command: list[str], overrides: list[str], root: Path) -> dict:
    """One real run; its run summary's metrics, and the wall time around the process."""
    result, wall = launch(command, overrides, root)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return summary(root)["metrics"] | {"wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="static", help="model config: static (default), minilm, hub")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both runs")
    args = parser.parse_args()
    overrides = [f"model={args.model}", *SMALL, *args.overrides]
    load_before = os.getloadavg()
    batch = int([o for o in overrides if o.startswith("train.batch_size=")][-1].split("=")[1])
    per_process = [*overrides, f"train.batch_size={max(1, batch // args.processes)}"]
    with tempfile.TemporaryDirectory(prefix="bench-processes-") as tmp:
        one = run([sys.executable], overrides, Path(tmp, "one"))
        many = run(torchrun(args.processes), per_process, Path(tmp, "many"))
    n = args.processes
    print(f"{' '.join(overrides)}; {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"\n| | 1 process | {n} processes | {n} / 1 |\n|---|---|---|---|")
    for label, key in ROWS + [("wall time, whole process (s)", "wall_s")]:
        print(f"| {label} | {one[key]:.2f} | {many[key]:.2f} | {many[key] / one[key]:.2f} |")
    print(f"| global batch | {one['train/global_batch']:.0f} | {many['train/global_batch']:.0f} | |")
    print(f"\nload average (1/5/15 min) before {'/'.join(f'{x:.1f}' for x in load_before)}, "
          f"after {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
