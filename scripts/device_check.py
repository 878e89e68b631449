"""Device check: the figures a lent GPU should give, in one command and one JSON file.

A GPU's time is short when one is lent, so everything this project has only measured on 2 CPU
cores is measured here at once, each section on its own (a failing section records its error
and the others still run):

  step_speed  bench_step's speed rows at batch 64, k = 0, 8 and 64, in bf16: the plain
              sentence-transformers recipe, live, length-aware at two chunk budgets, frozen
              and bank (scripts/bench_step.py's functions);
  end_to_end  a short `python -m pipeline hardware=cuda` run (split, mine, train, test), with
              loss.chunk_budget=auto, so the run's tags say what auto chose on this device;
  encode      mining's encode throughput, texts/s (pipeline/stages/encoding.py, as the embed
              stage calls it);
  torchrun    the same short run as one process per GPU, if there is more than one.

On a machine without CUDA it runs the smoke mode instead (automatic; --mode smoke asks for it):
the static model, tiny batches and data, small k, in about a minute on 2 CPU cores, so the tests
run every section for real. --mode gpu on a machine without CUDA is refused with what was found.

    python scripts/device_check.py                     # a CUDA GPU: within 8 minutes
    python scripts/device_check.py --mode smoke --out /tmp/check.json
    make device-check

It writes --out (default outputs/device_check.json) and prints one table. Nothing is logged to
the project's MLflow store; caches and runs live in a temporary directory.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bench_processes  # noqa: E402  (scripts/, importable once on the path)
import bench_step  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    """How big each section's work is, per mode."""

    model: str
    batch: int
    ks: tuple[int, ...]
    steps: int  # bench_step's timed steps per row, after one warm-up
    max_seq_length: int
    budgets: tuple[int, int]  # the two length-aware chunk budgets
    refresh: int  # bank: steps between refreshes
    hardware: tuple[str, ...]
    data: tuple[str, ...]  # data overrides for every section
    run: tuple[str, ...]  # the end-to-end run's overrides
    run_timeout: int  # seconds


GPU = Sizes(model="minilm", batch=64, ks=(0, 8, 64), steps=3, max_seq_length=128, budgets=(1024, 16384), refresh=100,
            hardware=("hardware=cuda", "hardware.precision=bf16"), data=("data.max_rows=4000",),
            run=("model=minilm", "k=8", "train.batch_size=64", "train.max_steps=30", "eval=final",
                 "data.max_rows=3000", "eval.test_distractors=1000"), run_timeout=240)
SMOKE = Sizes(model="static", batch=4, ks=(0, 2), steps=1, max_seq_length=16, budgets=(32, 256), refresh=1,
              hardware=("hardware=cpu",), data=("data.max_rows=120",),
              run=("model=static", "k=2", "train.batch_size=8", "train.max_steps=2", "eval=none",
                   "data.max_rows=300", "eval.test_distractors=50"), run_timeout=300)
# bench_step's recipes at the first budget; the second budget times length-aware alone.
RECIPES = (bench_step.PLAIN, "live", "length-aware", "frozen (+ both)", "bank (+ both)")
RUN_FIGURES = ("time/total_s", "time/train_s", "train/s_per_step", "test/ndcg_at_10")


def machine(mode: str) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "mode": mode,
            "torch": torch.__version__, "cuda_build": torch.version.cuda, "gpu_count": torch.cuda.device_count(),
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "bf16": bool(cuda and torch.cuda.is_bf16_supported()), "python": platform.python_version(),
            "cpus": os.cpu_count(), "platform": platform.platform()}


def step_speed(sizes: Sizes, tmp: Path) -> dict:
    """bench_step's speed rows, length-aware ones at each chunk budget; median s/step per row."""
    rows: list[dict] = []
    for budget in sizes.budgets:
        recipes = RECIPES if budget == sizes.budgets[0] else ("length-aware",)
        args = bench_step.parse(["--table", "speed", "--model", sizes.model, "--batch", str(sizes.batch),
                                 "--ks", ",".join(map(str, sizes.ks)), "--steps", str(sizes.steps),
                                 "--max-seq-length", str(sizes.max_seq_length), "--refresh", str(sizes.refresh),
                                 "--recipes", ",".join(recipes), *sizes.hardware, *sizes.data,
                                 f"loss.chunk_budget={budget}"])
        for row in bench_step.speed(args, args.overrides, tmp):
            chunked = bench_step.MODES.get(row["recipe"], {}).get("length_aware", False)
            if chunked:
                row["recipe"] += f" @ chunk_budget {budget}"
            rows.append(row | {"chunk_budget": budget if chunked else None,
                               "s_per_step": statistics.median(row["seconds"])})
    return {"rows": rows, "table": bench_step.speed_table(args, rows), "batch": sizes.batch,
            "precision": "bf16" if "hardware.precision=bf16" in sizes.hardware else "fp32"}


def end_to_end(sizes: Sizes, tmp: Path, command: list[str] | None = None, batch: int | None = None) -> dict:
    """One short real run through the CLI (`command`: a launcher, default this Python); its exit
    code, wall time, main figures and what loss.chunk_budget=auto chose."""
    overrides = [*sizes.run, *sizes.hardware, "loss.chunk_budget=auto", "mlflow.log_model=false"]
    if batch is not None:
        overrides.append(f"train.batch_size={batch}")
    root = tmp / ("torchrun" if command else "run")
    result, wall = bench_processes.launch(command or [sys.executable], overrides, root, sizes.run_timeout)
    out = {"exit_code": result.returncode, "wall_s": wall, "overrides": overrides}
    if result.returncode != 0:
        return out | {"status": "failed", "error": f"exit {result.returncode}: {result.stderr[-2000:]}"}
    summary = bench_processes.summary(root)
    return out | {name: summary["metrics"].get(name) for name in RUN_FIGURES} | {
        name: value for name, value in summary["tags"].items() if name.startswith("chunk_budget/")}


def encode(sizes: Sizes, tmp: Path) -> dict:
    """Texts/s of mining's encode (the embed stage's call) over the training split's texts."""
    from pipeline.result import RunResult
    from pipeline.stages import embed, encoding, models, split
    from pipeline.stages.stage import Context

    cfg, hardware = bench_step.composed([f"model={sizes.model}", f"model.max_seq_length={sizes.max_seq_length}",
                                         f"paths.cache_dir={tmp / 'cache'}", *sizes.hardware, *sizes.data])
    train = split.run(Context(cfg, hardware, RunResult(tmp / "encode")))["train"]
    model = models.load_model(cfg.model, device=hardware.model_device)
    queries, corpus = embed.texts(train)
    batch = cfg.miner.batch_size
    encoding.encode(model, corpus[:batch], batch, query=False, normalize=True)  # warm-up
    start = time.perf_counter()
    encoding.encode(model, queries, batch, query=True, normalize=True)
    encoding.encode(model, corpus, batch, query=False, normalize=True)
    if hardware.device == "cuda":
        import torch

        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    texts = len(queries) + len(corpus)
    return {"texts": texts, "seconds": seconds, "texts_per_s": texts / seconds, "batch": batch,
            "model": sizes.model}


def torchrun(sizes: Sizes, tmp: Path) -> dict:
    """The end-to-end run as one process per GPU (each at batch / GPUs: the same global batch)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if sizes is SMOKE or gpus < 2:
        return {"status": "skipped", "reason": f"{gpus} CUDA GPU(s): a multi-process run needs at least 2"
                + (" (smoke mode)" if sizes is SMOKE else "")}
    batch = int(next(o for o in sizes.run if o.startswith("train.batch_size=")).split("=")[1])
    return end_to_end(sizes, tmp, bench_processes.torchrun(gpus), max(1, batch // gpus)) | {"processes": gpus}


def section(run: Callable[[], dict]) -> dict:
    """One section's figures, or its error: a failure here never loses the other sections."""
    start = time.perf_counter()
    try:
        figures = run()
    except (Exception, SystemExit) as exc:  # bench_step exits with a refusal's message
        figures = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[-3000:],
                   "traceback": traceback.format_exc()[-3000:]}
    return {"status": "ok"} | figures | {"section_s": time.perf_counter() - start}


def headline(name: str, figures: dict) -> str:
    """The section's one figure for the table."""
    if figures["status"] != "ok":
        return figures.get("reason") or figures["error"].splitlines()[0][:100]
    if name == "step_speed":
        return f"{len(figures['rows'])} rows (below), batch {figures['batch']}, {figures['precision']}"
    if name == "encode":
        return f"{figures['texts_per_s']:,.0f} texts/s ({figures['texts']} texts, batch {figures['batch']})"
    auto = figures.get("chunk_budget/chosen", "?")
    return f"exit {figures['exit_code']}, {figures['wall_s']:.1f} s wall; chunk_budget=auto kept {auto}"


def table(report: dict) -> str:
    lines = ["| section | status | figure | seconds |", "|---|---|---|---|"]
    for name, figures in report["sections"].items():
        lines.append(f"| {name} | {figures['status']} | {headline(name, figures)} | {figures['section_s']:.1f} |")
    speed = report["sections"]["step_speed"]
    return "\n".join(lines + ([f"\nstep_speed:\n{speed['table']}"] if speed["status"] == "ok" else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("auto", "gpu", "smoke"), default="auto",
                        help="auto: gpu where CUDA is, else smoke")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "device_check.json")
    args = parser.parse_args()
    import datasets
    import torch

    from pipeline.config.hardware import found

    if args.mode == "gpu" and not torch.cuda.is_available():
        sys.exit(f"error: --mode gpu needs a CUDA device, and this machine has none: found {found()}. "
                 "Use --mode smoke (or leave --mode out) for the CPU smoke check.")
    mode = args.mode if args.mode != "auto" else "gpu" if torch.cuda.is_available() else "smoke"
    if mode == "smoke" and args.mode == "auto":
        print(f"no CUDA device ({found()}): smoke mode, the static model on tiny sizes", file=sys.stderr)
    sizes = GPU if mode == "gpu" else SMOKE
    datasets.disable_progress_bars()
    report: dict = {"machine": machine(mode), "sizes": asdict(sizes), "sections": {}}
    with tempfile.TemporaryDirectory(prefix="device-check-") as tmp:
        for name, run in (("step_speed", step_speed), ("end_to_end", end_to_end), ("encode", encode),
                          ("torchrun", torchrun)):
            print(f"device check: {name}", file=sys.stderr, flush=True)
            report["sections"][name] = section(partial(run, sizes, Path(tmp)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(table(report))
    print(f"\nmachine: {report['machine']}\nwritten: {args.out}")


if __name__ == "__main__":
    main()
