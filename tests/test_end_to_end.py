"""Real CLI runs: split -> mine -> train -> evaluate, recorded in a real MLflow store."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import ROOT, write_jsonl

STAGE_TIMES = ["time/split_s", "time/mine_s", "time/train_s", "time/eval_s", "time/total_s"]
TEST_METRICS = ["ndcg_at_10", "mrr_at_10", "recall_at_1", "recall_at_10", "recall_at_100", "map_at_100"]


def test_run_with_hard_negatives_is_recorded_in_mlflow(cli):
    result = cli("k=2")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = cli.runs()
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for name in STAGE_TIMES:
        assert metrics[name] > 0, name
    for name in TEST_METRICS:
        assert 0 <= metrics[f"test/{name}"] <= 1
        assert f"base/{name}" in metrics and f"gain/{name}" in metrics
    assert metrics["gain/ndcg_at_10"] == metrics["test/ndcg_at_10"] - metrics["base/ndcg_at_10"]
    assert metrics["train/steps"] == 6
    assert metrics["split/leaked_positives"] == 0
    assert metrics["split/train_rows"] + metrics["split/dev_rows"] + metrics["split/test_rows"] <= 800
    assert run.data.params["k"] == "2" and run.data.params["model.kind"] == "static"
    assert run.data.tags["cache/mine_hit"] in ("true", "false")
    assert "k=2" in run.data.tags["hydra/overrides"]
    # Provenance: the pipeline's own checkout (HNPIPE_ROOT is a temp dir), and where the process ran.
    assert len(run.data.tags["git_commit"]) == 40 and run.data.tags["git_dirty"] in ("true", "false")
    assert len(run.data.tags["code_hash"]) == 16
    assert run.data.tags["host/pid"].isdigit() and run.data.tags["host/name"]
    assert run.data.tags["launcher/job_id"] == os.environ.get("SLURM_JOB_ID", "none")
    model_dir = Path(run.data.tags["model_dir"])
    assert (model_dir / "modules.json").is_file()
    artifacts = {a.path for a in cli_artifacts(cli, run)}
    assert {"run_summary.json", "hydra", "test", "base"} <= artifacts
    assert metrics["split/leaked_queries"] == 0  # docstring anchors are unique
    for prefix in ("test", "base"):  # per-query scores whose means are the logged metrics
        scores = per_query(cli, run, prefix)["queries"]
        assert len(scores) == metrics["test/queries"]
        for name in TEST_METRICS:
            mean = sum(query[name] for query in scores.values()) / len(scores)
            assert mean == pytest.approx(metrics[f"{prefix}/{name}"], abs=1e-12)


def per_query(cli, run, prefix: str) -> dict:
    """A run's `<prefix>/per_query.json` artifact, read back through MLflow."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.MlflowClient(cli.tracking_uri).download_artifacts(
            run.info.run_id, f"{prefix}/per_query.json", tmp)
        return json.loads(Path(path).read_text())


def cli_artifacts(cli, run):
    import mlflow

    return mlflow.MlflowClient(cli.tracking_uri).list_artifacts(run.info.run_id)


def test_k0_trains_on_plain_pairs_without_mining(cli):
    result = cli("k=0")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = cli.runs()
    assert run.info.status == "FINISHED"
    assert run.data.metrics["time/mine_s"] == 0
    assert "cache/mine_key" not in run.data.tags


def test_a_failing_run_is_recorded_failed_with_its_error(cli, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": " ", "positive": ""}] * 5)
    result = cli("data=files", f"data.path={data}")
    assert result.returncode == 2
    assert "empty after removing blank and duplicate pairs" in result.stderr
    (run,) = cli.runs()
    assert run.info.status == "FAILED"
    assert "empty after removing" in run.data.tags["error"]


def test_files_source_with_column_mapping(cli, tmp_path):
    from pipeline.stages.docstrings import harvest

    rows = [{"question": r["anchor"], "answer": r["positive"]} for r in harvest([], 4, 40, 400)[:400]]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    result = cli("data=files", f"data.path={data}", "data.anchor_column=question",
                 "data.positive_column=answer", "k=1", "split.dev=0.05", "split.train=0.85",
                 "split.test=0.1")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = cli.runs()
    assert run.data.metrics["split/test_rows"] == 40


def test_runs_started_in_the_same_second_get_their_own_run_dirs(cli):
    # Fresh interpreters, as two users' commands are (warm children share their server's suffix).
    procs = [subprocess.Popen([sys.executable, "-m", "pipeline", "k=-1"], cwd=ROOT, env=cli.env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    assert [proc.wait(timeout=120) for proc in procs] == [2, 2]
    dirs = list(cli.root.glob("outputs/runs/*/*"))
    assert len(dirs) == 2 and all((d / ".hydra" / "config.yaml").is_file() for d in dirs)
