"""Benchmark: what a k-sweep pays for mining, one pipeline pass against one call per k.

On the same training split and model it times
  (a) eight independent `mine_hard_negatives` calls, k = 1,2,4,8,16,32,48,64;
  (b) the pipeline's mine stage serving the same eight k from an empty cache
      (embed + rank once, then one cut per k);
  (c) the pipeline's first k (embed + rank + cut) against a plain `model.encode`
      of the same texts, the floor no miner can beat;
and prints (b)/(a) (target <= 0.2) and (c)/encode (target <= 1.3).

    python scripts/bench_mining.py                          # static model, default data
    python scripts/bench_mining.py --model minilm --max-rows 600
    python scripts/bench_mining.py data=files data.path=pairs.jsonl miner=nv_retriever

Extra arguments are Hydra overrides, as for `python -m pipeline`. Nothing is
logged to MLflow; the cache lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

KS = (1, 2, 4, 8, 16, 32, 48, 64)


def _reference(train, model, miner, k: int) -> int:
    """One mine_hard_negatives call with the pipeline's miner settings; rows it kept."""
    from sentence_transformers.util import mine_hard_negatives

    return len(mine_hard_negatives(
        train, model, anchor_column_name="anchor", positive_column_name="positive",
        range_min=miner.range_min, range_max=miner.range_max, max_score=miner.max_score,
        min_score=miner.min_score, absolute_margin=miner.absolute_margin,
        relative_margin=miner.relative_margin, num_negatives=k,
        sampling_strategy=miner.sampling_strategy, output_format="n-tuple",
        batch_size=miner.batch_size, use_faiss=miner.use_faiss, verbose=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="static", help="model config: static (default), minilm, hub")
    parser.add_argument("--max-rows", type=int, default=None, help="cap on the data's rows")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=files data.path=...")
    args = parser.parse_args()

    from pipeline.config.rules import validate
    from pipeline.errors import PipelineError
    from pipeline.hydra_ext.compose import compose
    from pipeline.result import RunResult
    from pipeline.stages import embed, mine, models, split
    from pipeline.stages.stage import Context

    overrides = [f"model={args.model}", f"k={max(KS)}", *args.overrides]
    if args.max_rows:
        overrides.append(f"data.max_rows={args.max_rows}")
    try:
        cfg = compose(overrides)
        hardware = validate(cfg)
    except PipelineError as exc:
        sys.exit(f"error: {exc}")

    import datasets
    from omegaconf import OmegaConf

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="bench-mining-") as tmp:
        cfg.paths.cache_dir = str(Path(tmp, "cache"))
        train = split.run(Context(cfg, hardware, RunResult(Path(tmp, "run"))))["train"]
        model = models.load_model(cfg.model)
        queries, corpus = embed.texts(train)
        batch = cfg.miner.batch_size
        print(f"model={args.model} rows={len(train)} texts={len(queries) + len(corpus)} "
              f"miner: {OmegaConf.to_container(cfg.miner)}", flush=True)
        model.encode(queries[:batch], batch_size=batch)  # warm-up, outside every timing
        load_before = os.getloadavg()[0]

        start = time.perf_counter()
        model.encode(queries, batch_size=batch)
        model.encode(corpus, batch_size=batch)
        encode_s = time.perf_counter() - start

        pipeline_s, pipeline_rows = [], []
        for k in KS:
            cfg.k = k
            start = time.perf_counter()
            mined = mine.run(Context(cfg, hardware, RunResult(Path(tmp, "run"))), train, model).rows
            pipeline_s.append(time.perf_counter() - start)
            pipeline_rows.append(len(mined))

        reference_s, reference_rows = [], []
        for k in KS:
            start = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):  # its progress bars cannot be turned off
                reference_rows.append(_reference(train, model, cfg.miner, k))
            reference_s.append(time.perf_counter() - start)
        load_after = os.getloadavg()[0]

    print(f"\n{'k':>4} {'(a) mine_hard_negatives':>24} {'rows':>6} {'(b) pipeline':>13} {'rows':>6}")
    for k, a_s, a_rows, b_s, b_rows in zip(KS, reference_s, reference_rows, pipeline_s, pipeline_rows):
        print(f"{k:>4} {a_s:>23.2f}s {a_rows:>6} {b_s:>12.2f}s {b_rows:>6}")
    a_total, b_total = sum(reference_s), sum(pipeline_s)
    print(f"{'all':>4} {a_total:>23.2f}s {'':>6} {b_total:>12.2f}s")
    print(f"\nplain model.encode of the same {len(queries) + len(corpus)} texts: {encode_s:.2f}s")
    print(f"(b)/(a)  eight k, pipeline / independent calls: {b_total / a_total:.3f}  (target <= 0.2)")
    print(f"(c)      first mining / plain encode:           {pipeline_s[0] / encode_s:.3f}  (target <= 1.3)")
    print(f"         one mine_hard_negatives / plain encode: {reference_s[0] / encode_s:.3f}")
    print(f"load average (1 min) before/after: {load_before:.1f}/{load_after:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
