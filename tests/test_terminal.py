"""What a user sees: real CLI runs, with stderr piped (a log file, SLURM) and on a pseudo-terminal."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pytest

STAGES = ("split", "mine", "base_eval", "train", "test")
# Library output that belongs in the run's log file, never on the terminal.
CHATTER = ["Information Retrieval Evaluation", "Accuracy@1", "{'loss'", "'train_runtime'", "Loading weights",
           "Computing widget examples", "Batches", "Creating initial MLflow database tables",
           "Loading SentenceTransformer model"]


def test_piped_output_is_stage_lines_periodic_progress_and_a_summary(piped_run):
    _, result, run = piped_run
    assert result.stdout == ""
    shown = result.stderr
    for stage in STAGES:
        assert f"] {stage}: started\n" in shown
        assert re.search(rf"\] {stage}: done in [\d.:]+( s)? ?(\(cache (hit|miss: built)\))?\n", shown), stage
    assert re.search(r"\] train: [1-6]/6 steps \(\d+%\).*, ETA ", shown)
    assert "] dev @ step 6: nDCG@10 " in shown
    summary = shown[shown.index(f"run {run.info.run_id} finished"):]
    assert re.search(r"\n  nDCG@10 +[\d.]+ +[\d.]+ +[+-][\d.]+\n", summary)
    assert re.search(r"\n  train +[\d.:]+( s)?\n", summary) and "  split " in summary
    assert f"load_model('runs:/{run.info.run_id}/model')" in summary
    assert "open it:    mlflow ui --backend-store-uri sqlite:///" in summary


def test_library_chatter_goes_to_the_log_file_which_mlflow_keeps(piped_run):
    cli, result, run = piped_run
    for words in CHATTER:
        assert words not in result.stderr, words
    assert "\r" not in result.stderr
    # Every line is one of ours, timestamped, or a line of the final summary.
    assert all(re.match(r"(\[\d\d:\d\d:\d\d\] |  |$)", line) for line in result.stderr.splitlines())
    log_file = Path(run.data.tags["hydra/output_dir"]) / "pipeline.log"
    kept = log_file.read_text()
    assert "Information Retrieval Evaluation" in kept and "Creating initial MLflow database tables" in kept
    assert "train: done in" in kept
    artifacts = {a.path for a in mlflow.MlflowClient(cli.tracking_uri).list_artifacts(run.info.run_id)}
    assert "pipeline.log" in artifacts


@pytest.fixture(scope="module")
def terminal_run(tmp_path_factory, shared_cache):
    from helpers import Cli

    cli = Cli(tmp_path_factory.mktemp("tty-run"), shared_cache)
    code, shown = cli.in_terminal("k=1", "train.max_steps=12")  # FAST: mlflow.log_model=false
    assert code == 0, shown[-3000:]
    return cli, shown


def test_a_terminal_gets_progress_bars_around_the_same_stage_lines(terminal_run):
    _, shown = terminal_run
    assert re.search(r"\rtrain: +\d+%\|.*\| *\d+/12 \[", shown)  # tqdm's bar, redrawn in place
    assert re.search(r"\rtest: (queries|corpus): +\d+%\|", shown)
    for stage in STAGES:
        assert f"] {stage}: started" in shown and f"] {stage}: done in" in shown
    for words in CHATTER:
        assert words not in shown, words


def test_log_model_false_keeps_the_model_in_the_run_dir_only(terminal_run):
    cli, shown = terminal_run
    (run,) = cli.runs()
    assert "(not logged in MLflow; mlflow.log_model=true logs it)" in shown
    assert "model/uri" not in run.data.tags and not run.outputs.model_outputs
    assert (Path(run.data.tags["model_dir"]) / "modules.json").is_file()
