"""The few lines a finished run leaves on the terminal: what each stage took (and whether the
cache served it), the test metrics beside the base model's with the gain, and where the run,
its model and its log file are, what loss.chunk_budget=auto chose, and each warning/* tag the
run set. Built from the RunResult only, so it shows what MLflow holds.
"""

from __future__ import annotations

from pathlib import Path

from pipeline import redact
from pipeline.names import CHUNK_BUDGET_CHOSEN, CHUNK_BUDGET_HOW, MODEL_LOAD, WARNING_PREFIX
from pipeline.progress import clock
from pipeline.result import RunResult
from pipeline.tracking.provenance import PROJECT
from pipeline.tracking_uri import sqlite_path

# (row label, time metric, cache stage whose hit tag applies); mining's time includes embedding's.
_STAGES = [("split", "time/split_s", "split"), ("mine", "time/mine_s", "mine"),
           ("  embed", "time/embed_s", "embed"), ("base eval", "time/base_eval_s", "base_eval"),
           ("train", "time/train_s", None), ("test", "time/test_s", None), ("total", "time/total_s", None)]
_METRICS = [("nDCG@10", "ndcg_at_10"), ("MRR@10", "mrr_at_10"), ("R@1", "recall_at_1"),
            ("R@10", "recall_at_10"), ("R@100", "recall_at_100"), ("MAP@100", "map_at_100")]


def _stage_rows(result: RunResult) -> list[str]:
    rows = [f"  {'stage':<10} {'time':>8}  cache"]
    for label, metric, cached in _STAGES:
        hit = result.tags.get(f"cache/{cached}_hit", "") if cached else ""
        if metric not in result.metrics or (cached and not hit):  # a stage this run skipped (k=0)
            continue
        cache = {"true": "hit", "false": "miss (built)"}.get(hit, "")
        rows.append(f"  {label:<10} {clock(result.metrics[metric]):>8}  {cache}".rstrip())
    return rows


def _metric_rows(result: RunResult) -> list[str]:
    rows = [f"  {'test':<10} {'base':>8} {'tuned':>8} {'gain':>8}"]
    for label, name in _METRICS:
        figures = [result.metrics.get(f"{part}/{name}") for part in ("base", "test", "gain")]
        if None not in figures:
            base, tuned, gain = figures
            rows.append(f"  {label:<10} {base:>8.4f} {tuned:>8.4f} {gain:>+8.4f}")
    sources = sorted({name.split("/")[1] for name in result.metrics
                      if name.startswith("test/") and name.endswith("/ndcg_at_10") and name.count("/") == 2})
    if sources:  # a run of several sources: the figures above are their macro averages
        rows[0] += "   (macro average of the sources)"
        rows += ["", f"  {'nDCG@10':<10} {'base':>8} {'tuned':>8} {'gain':>8}   per source"]
        rows += [f"  {source:<10} {result.metrics[f'base/{source}/ndcg_at_10']:>8.4f} "
                 f"{result.metrics[f'test/{source}/ndcg_at_10']:>8.4f} "
                 f"{result.metrics[f'gain/{source}/ndcg_at_10']:>+8.4f}" for source in sources]
    return rows


def how_to_open(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The command (or address) that shows the run in the MLflow UI, in its model-training view (MLflow
    3's UI opens in its GenAI view unless the address says otherwise); no credentials."""
    run_page = f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    if tracking_uri.startswith(("http://", "https://")):
        return f"{redact.uri(tracking_uri).rstrip('/')}/{run_page}"
    page = f"http://127.0.0.1:5000/{run_page}"
    store = sqlite_path(tracking_uri)
    if store is not None and store.resolve() == PROJECT / "outputs" / "mlflow.db":
        return f"make ui, then {page}"
    return f"mlflow ui --backend-store-uri {redact.uri(tracking_uri)} --port 5000, then {page}"


def summary(result: RunResult, run_id: str, experiment_id: str, mlflow_cfg, log_file: Path | None) -> str:
    """The tables and pointers, as one string of lines."""
    model = result.tags.get(MODEL_LOAD) or \
        f"{result.model_dir} (not logged in MLflow; mlflow.log_model=true logs it)"
    lines = [f"run {run_id} finished", *_stage_rows(result), "", *_metric_rows(result), "",
             f"  MLflow run: {run_id} in experiment {mlflow_cfg.experiment_name}",
             f"  open it:    {how_to_open(mlflow_cfg.tracking_uri, experiment_id, run_id)}",
             f"  model:      {model}"]
    if log_file is not None:
        lines.append(f"  log file:   {log_file}")
    if CHUNK_BUDGET_CHOSEN in result.tags:  # loss.chunk_budget=auto
        lines.append(f"  chunks:     loss.chunk_budget=auto kept {result.tags[CHUNK_BUDGET_CHOSEN]} "
                     f"({result.tags[CHUNK_BUDGET_HOW]})")
    lines += [f"  warning:    {text} ({name})" for name, text in sorted(result.tags.items())
              if name.startswith(WARNING_PREFIX)]
    return "\n".join(lines)
