"""What survives a crash: killed runs leave no half cache entry, earlier runs stay intact,
a rerun completes, concurrent jobs build a cache entry once, secrets never reach MLflow."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow

from helpers import FAST, ROOT
from pipeline.run.cache import StageCache

# MiniLM at a short length: slow enough to be killed mid-mining, quick enough to rerun.
MINILM_SMALL = ["model=minilm", "model.max_seq_length=32", "data.max_rows=1500",
                "train.max_steps=2", "train.batch_size=8", "eval=none", "eval.test_distractors=50",
                "k=2"]


def _complete_entries(cache: Path) -> set[Path]:
    return {m.parent for m in cache.glob("*/*/_complete.json")}


def _assert_no_half_entry(cache: Path) -> None:
    """Every directory that looks like an entry is complete; builds in progress are hidden."""
    for stage in (p for p in cache.iterdir() if p.is_dir()):
        for entry in (p for p in stage.iterdir() if p.is_dir() and not p.name.startswith(".tmp-")):
            assert (entry / "_complete.json").is_file(), entry


def _start(cli, overrides: list[str]) -> subprocess.Popen:
    args = [sys.executable, "-m", "pipeline", *overrides]
    return subprocess.Popen(args, cwd=ROOT, env=cli.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_sigkill_during_mining_leaves_no_valid_half_entry_and_rerun_completes(cli, tmp_path):
    cache = tmp_path / "cache"
    overrides = [*MINILM_SMALL, f"paths.cache_dir={cache}"]
    proc = _start(cli, overrides)
    _wait_for(lambda: any((cache / "mine").glob(".tmp-*/")), proc)
    time.sleep(1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not [entry for entry in _complete_entries(cache) if entry.parent.name == "mine"]
    _assert_no_half_entry(cache)

    rerun = _start(cli, overrides)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out[-3000:]
    assert any(p.parent.name == "mine" for p in _complete_entries(cache))
    assert not list((cache / "mine").glob(".tmp-*"))
    finished = [r for r in cli.runs() if r.info.status == "FINISHED"]
    assert len(finished) == 1 and finished[0].data.tags["cache/mine_hit"] == "false"


def test_sigkill_during_training_keeps_earlier_runs_intact(cli, tmp_path):
    cache = tmp_path / "cache"
    first = cli(f"paths.cache_dir={cache}", "k=1")
    assert first.returncode == 0, first.stderr[-3000:]
    (done,) = cli.runs()

    overrides = [*FAST, f"paths.cache_dir={cache}", "k=1", "train.max_steps=100000"]
    proc = _start(cli, overrides)
    seen: list[str] = []

    def training_started() -> bool:
        line = proc.stdout.readline()
        seen.append(line)
        return "'loss'" in line

    _wait_for(training_started, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _assert_no_half_entry(cache)

    again = cli(f"paths.cache_dir={cache}", "k=1")
    assert again.returncode == 0, again.stderr[-3000:]
    runs = {r.info.run_id: r for r in cli.runs()}
    assert runs[done.info.run_id].info.status == "FINISHED"
    assert runs[done.info.run_id].data.metrics == done.data.metrics
    assert sum(r.info.status == "FINISHED" for r in runs.values()) == 2


def _build_once(root: str, counter: str, results) -> None:
    def build(out: Path) -> None:
        with open(counter, "a") as handle:
            handle.write("built\n")
        time.sleep(2)
        (out / "data.txt").write_text("x")

    entry = StageCache(root).get_or_build("split", "samekey", build)
    results.put((entry.hit, str(entry.path)))


def test_two_processes_needing_one_entry_build_it_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    counter = tmp_path / "builds.txt"
    procs = [ctx.Process(target=_build_once, args=(str(tmp_path / "cache"), str(counter), results))
             for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert counter.read_text() == "built\n"
    assert [hit for hit, _ in outcomes] == [False, True]
    assert outcomes[0][1] == outcomes[1][1]


def test_a_corrupt_entry_is_rebuilt_not_read(tmp_path):
    cache = StageCache(tmp_path)
    half = tmp_path / "split" / "k1"
    half.mkdir(parents=True)
    (half / "partial.txt").write_text("half")
    entry = cache.get_or_build("split", "k1", lambda out: (out / "data.txt").write_text("x"))
    assert not entry.hit
    assert not (entry.path / "partial.txt").exists() and (entry.path / "data.txt").is_file()


def test_tokens_in_the_environment_never_reach_mlflow(cli, tmp_path):
    secret = "hf_SECRETvalue1234567890"
    result = cli("k=0", env={"HF_TOKEN": secret, "MLFLOW_TRACKING_PASSWORD": secret})
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = cli.runs()
    client = mlflow.MlflowClient(cli.tracking_uri)
    assert secret not in repr(run.data.params) + repr(run.data.tags)
    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "artifacts")))
    texts = [p.read_text(errors="ignore") for p in local.rglob("*") if p.is_file()]
    assert texts and not any(secret in text for text in texts)
