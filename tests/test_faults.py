"""What survives a crash: killed runs leave no half cache entry, earlier runs stay intact,
a rerun completes, concurrent jobs build a cache entry once, secrets never reach MLflow."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

import warm
from helpers import FAST, ROOT, compose, fill, read_only, small_filesystem, write_jsonl
from pipeline.cache import StageCache

# Other processes: the command line, launchers, benchmarks (make test runs them; make check does not).
pytestmark = pytest.mark.slow

# MiniLM at a short length: slow enough to be killed mid-mining, quick enough to rerun.
MINILM_SMALL = ["model=minilm", "model.max_seq_length=32", "data.max_rows=600",
                "train.max_steps=2", "train.batch_size=8", "eval=none", "eval.test_distractors=50",
                "k=2"]


def _complete_entries(cache: Path) -> set[Path]:
    return {m.parent for m in cache.glob("*/*/_complete.json")}


def _assert_no_half_entry(cache: Path) -> None:
    """Every directory that looks like an entry is complete; builds in progress are hidden."""
    for stage in (p for p in cache.iterdir() if p.is_dir()):
        for entry in (p for p in stage.iterdir() if p.is_dir() and not p.name.startswith(".tmp-")):
            assert (entry / "_complete.json").is_file(), entry


def _start(cli, overrides: list[str], **env: str):
    """`python -m pipeline OVERRIDES` started (a warm child where it can be: tests/warm.py), a
    Popen-like process with its output, stderr included, readable as text on `.stdout`."""
    read, write = os.pipe()
    with open(os.devnull) as null:
        proc = warm.start([sys.executable, "-m", "pipeline", *overrides], cwd=ROOT, env=cli.env(**env),
                          stdin=null.fileno(), stdout=write, stderr=write)
    os.close(write)
    proc.stdout = os.fdopen(read)
    return proc


def _output(proc, timeout: float) -> str:
    """All a started process printed, once it has exited (within `timeout` seconds)."""
    out = proc.stdout.read()
    proc.wait(timeout)
    return out


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.stdout.read()[-3000:] if proc.stdout else f"exited {proc.returncode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_sigkill_during_mining_leaves_no_valid_half_entry_and_rerun_completes(cli, tmp_path):
    cache = cli.own_cache(tmp_path / "cache")
    overrides = [*MINILM_SMALL, f"paths.cache_dir={cache}"]
    proc = _start(cli, overrides)
    # Mining's long part is encoding the queries and corpus (the embed stage), before the ranking.
    _wait_for(lambda: any((cache / "embed").glob(".tmp-*/")), proc)
    time.sleep(1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not [entry for entry in _complete_entries(cache) if entry.parent.name in ("embed", "mine")]
    _assert_no_half_entry(cache)

    rerun = _start(cli, overrides)
    out = _output(rerun, 600)
    assert rerun.returncode == 0, out[-3000:]
    assert {p.parent.name for p in _complete_entries(cache)} >= {"embed", "mine"}
    assert not list(cache.glob("*/.tmp-*"))
    finished = [r for r in cli.runs() if r.info.status == "FINISHED"]
    assert len(finished) == 1 and finished[0].data.tags["cache/mine_hit"] == "false"


def test_sigkill_during_training_keeps_earlier_runs_intact(cli, tmp_path):
    cache = tmp_path / "cache"
    first = cli(f"paths.cache_dir={cache}", "k=1")
    assert first.returncode == 0, first.stderr[-3000:]
    (done,) = cli.runs()

    overrides = [*FAST, f"paths.cache_dir={cache}", "k=1", "train.max_steps=100000"]
    proc = _start(cli, overrides, HNPIPE_PROGRESS_EVERY="0.5")
    seen: list[str] = []

    def training_started() -> bool:  # the periodic progress line of a piped run
        line = proc.stdout.readline()
        seen.append(line)
        return re.search(r"\] train: \d+/100,000 steps", line) is not None

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
    # The killed run's process is gone, so the next run's start ended it KILLED, saying how it knew.
    (killed,) = [r for r in runs.values() if r.info.status == "KILLED"]
    assert f"process {killed.data.tags['host/pid']}" in killed.data.tags["error"]
    assert "no longer exists" in killed.data.tags["error"]
    newest = cli.runs()[0]
    assert killed.data.tags["reaped_by"].startswith(f"run {newest.info.run_id}")


def test_sigkill_of_a_sweep_leaves_parent_and_child_that_the_report_ends_killed(cli, tmp_path):
    proc = _start(cli, ["-m", *FAST, f"paths.cache_dir={cli.cache}", "k=1", "train.max_steps=100000"])
    # sweep.json appears once the store exists and the parent run is in it; then wait for the child.
    _wait_for(lambda: any(cli.root.glob("outputs/multirun/*/*/sweep.json")) and len(cli.all_runs()) == 2, proc)
    time.sleep(2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert {r.info.status for r in cli.all_runs()} == {"RUNNING"}

    report = warm.run([sys.executable, "-m", "pipeline.report"], cwd=ROOT, env=cli.env(),
                            timeout=300)
    assert report.returncode == 2  # nothing FINISHED to report on, said in one message
    assert "no FINISHED runs" in report.stderr and "Traceback" not in report.stderr
    for run in cli.all_runs():
        assert run.info.status == "KILLED"
        assert f"process {proc.pid}" in run.data.tags["error"]
        assert run.data.tags["reaped_by"].startswith("pipeline.report")


def test_a_full_disk_is_one_message_and_the_failed_run_keeps_what_it_measured(cli, tmp_path):
    """A file-size limit refuses the model's 47 MB weights, which the train stage saves after
    training, the way a full disk would."""
    import resource

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20 * 2**20, 20 * 2**20))

    result = subprocess.run([sys.executable, "-m", "pipeline", *FAST, f"paths.cache_dir={tmp_path}/cache",
                             "k=0"], cwd=ROOT, env=cli.env(), capture_output=True, text=True, timeout=600,
                            preexec_fn=limit_file_size)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "the disk refused a write" in result.stderr and "paths.outputs_dir" in result.stderr
    assert "Traceback" not in result.stderr
    assert "] train: stopped after" in result.stderr  # saving the trained model failed
    (run,) = cli.runs()
    assert run.info.status == "FAILED"
    # Everything measured before the failure is kept, the training curves logged as training went.
    client = mlflow.MlflowClient(cli.tracking_uri)
    assert run.data.metrics["split/train_rows"] > 0 and "base/ndcg_at_10" in run.data.metrics
    assert [p.step for p in client.get_metric_history(run.info.run_id, "train/loss")] == [2, 4, 6]
    assert [p.step for p in client.get_metric_history(run.info.run_id, "dev/ndcg_at_10")] == [6]
    assert "test/ndcg_at_10" not in run.data.metrics
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert sorted(i.dataset.name for i in inputs) == ["docstrings/dev", "docstrings/test", "docstrings/train"]
    assert "pipeline.log" in {a.path for a in client.list_artifacts(run.info.run_id)}


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


@pytest.mark.fresh_store
def test_two_runs_started_together_on_a_fresh_store_both_finish(cli, tmp_path):
    """The first to open the fresh sqlite store creates and migrates it; the other waits for it.
    The smallest run there is (a small file, one step, no dev evaluation): most of it is start-up."""
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": f"how do I do thing {i}", "positive": f"thing_{i}()"}
                                                   for i in range(200)])
    tiny = [*FAST, f"paths.cache_dir={tmp_path / 'cache'}", "data=files", f"data.path={pairs}", "k=0",
            "train.max_steps=1", "eval=none", "eval.test_distractors=20"]
    procs = [_start(cli, tiny) for _ in range(2)]
    outputs = [_output(proc, 300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], "\n".join(out[-2000:] for out in outputs)
    assert [run.info.status for run in cli.runs()] == ["FINISHED", "FINISHED"]


def test_a_corrupt_entry_is_rebuilt_not_read(tmp_path):
    cache = StageCache(tmp_path)
    half = tmp_path / "split" / "k1"
    half.mkdir(parents=True)
    (half / "partial.txt").write_text("half")
    entry = cache.get_or_build("split", "k1", lambda out: (out / "data.txt").write_text("x"))
    assert not entry.hit
    assert not (entry.path / "partial.txt").exists() and (entry.path / "data.txt").is_file()


SECRET = "hf_SECRETvalue1234567890"


def _files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_secret_given_as_an_override_is_refused_and_written_nowhere(cli, tmp_path):
    result = cli(f"+api_token={SECRET}", "k=0")
    assert result.returncode == 2 and "api_token" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert list(cli.root.glob("outputs/runs/*/*/.hydra/overrides.yaml"))  # Hydra wrote its copies ...
    assert _files_holding(cli.root, SECRET) == []  # ... and they were scrubbed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_credentials_in_a_server_uri_work_and_no_secret_reaches_the_server_or_the_outputs(cli, tmp_path, empty_store):
    server_dir, port = tmp_path / "server", _free_port()
    server_dir.mkdir()
    shutil.copyfile(empty_store, server_dir / "store.db")
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers",
               "1", "--backend-store-uri", f"sqlite:///{server_dir}/store.db", "--artifacts-destination",
               str(server_dir / "artifacts")]
    # No server-side jobs (a job runner and seven consumer processes): nothing here submits one.
    with open(os.devnull, "r+") as null:
        server = warm.start(command, cwd=ROOT, env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                            stdin=null.fileno(), stdout=null.fileno(), stderr=null.fileno())
    try:
        deadline = time.monotonic() + 180
        while not _answers(port):
            assert server.poll() is None and time.monotonic() < deadline, "the MLflow server did not start"
            time.sleep(0.5)
        uri = f"http://me:{SECRET}@127.0.0.1:{port}"
        env = {"MLFLOW_TRACKING_URI": uri, "HF_TOKEN": SECRET, "MLFLOW_TRACKING_PASSWORD": SECRET}
        result = cli("k=0", env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert SECRET not in result.stdout + result.stderr
        (run,) = mlflow.MlflowClient(uri).search_runs(["1"])
        assert run.info.status == "FINISHED"
        assert run.data.params["mlflow.tracking_uri"] == f"http://me:***@127.0.0.1:{port}"
        local = Path(mlflow.MlflowClient(uri).download_artifacts(run.info.run_id, "", str(tmp_path / "got")))
        assert [p.name for p in local.rglob("*.json")] and _files_holding(local, SECRET) == []
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert _files_holding(server_dir, SECRET) == [] and _files_holding(cli.root, SECRET) == []


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
        return True
    except OSError:
        return False


def test_an_interrupted_joblib_sweep_leaves_no_run_running(cli, tmp_path):
    """SIGTERM goes to the sweep's process only (kill, or a scheduler): its jobs run in joblib's
    worker processes, which the launcher kills -9 as the sweep unwinds, unless the sweep stops
    them first. (Ctrl-C's SIGINT takes the same path: test_sweep interrupts a sweep with it.)"""
    returncode, log = cli.interrupted_sweep(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "k=0,1",
                                             "train.max_steps=100000"], lambda c: len(c.all_runs()) == 3,
                                            signal.SIGTERM, 1)
    assert returncode == 130, log[-3000:]
    assert "Traceback" not in log and "interrupted (Ctrl-C or SIGTERM)" in log
    runs = cli.all_runs()
    assert len(runs) == 3 and {r.info.status for r in runs} == {"KILLED"}, [(r.info.status, r.data.tags) for r in runs]
    errors = [r.data.tags["error"] for r in cli.runs()]
    assert all("interrupted" in error for error in errors), (errors, log[-3000:])


def test_a_held_store_lock_is_named_while_waited_on_and_given_up_on_with_one_message(tmp_path, monkeypatch, caplog):
    """This process holds the store's lock the way another run creating the store would."""
    from pipeline.errors import PipelineError
    from pipeline.tracking import store

    monkeypatch.setattr(store, "_LOCK_NOTICE_S", 0.5)
    monkeypatch.setattr(store, "_LOCK_WAIT_S", 2.0)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    started = time.monotonic()
    with store._store_lock(uri), pytest.raises(PipelineError) as refused:
        store.client(uri)
    assert 2.0 <= time.monotonic() - started < 10
    lock, holder = f"{tmp_path}/mlflow.db.lock", f"process {os.getpid()} on host {socket.gethostname()}"
    (waiting,) = [r.getMessage() for r in caplog.records if "waiting for the MLflow store's lock" in r.getMessage()]
    assert lock in waiting and holder in waiting
    assert lock in str(refused.value) and holder in str(refused.value) and "more than 2 s" in str(refused.value)
    assert not (tmp_path / "mlflow.db").exists()  # nothing was created behind the holder's back


def _store(db: Path) -> str:
    """A real MLflow store at `db`, created and migrated, with no run in it: its tracking URI."""
    from pipeline.tracking import store

    uri = f"sqlite:///{db}"
    store.client(uri)
    return uri


def _refusal(check, *args) -> str:
    from pipeline.errors import PipelineError

    with pytest.raises(PipelineError) as refused:
        check(*args)
    return str(refused.value)


class TestStoreAndOutputsFaults:
    """Each is one message naming the path and what to do; a store fault is found before a run starts
    where it can be (preflight), else it goes through the one error path (pipeline.faults)."""

    def test_a_truncated_store_is_refused_and_left_as_it_is(self, tmp_path):
        from pipeline.preflight import check_tracking

        db = tmp_path / "mlflow.db"
        uri = _store(db)
        check_tracking(uri)  # whole: accepted
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
        message = _refusal(check_tracking, uri)
        assert f"{db} is truncated" in message and "Restore a whole copy" in message
        assert db.stat().st_size > 0

    def test_a_damaged_store_says_so_and_what_to_do(self, tmp_path):
        from pipeline.tracking import store

        db = tmp_path / "mlflow.db"
        uri = _store(db)
        data = bytearray(db.read_bytes())
        data[4096:] = b"\xa5" * (len(data) - 4096)  # every page but the first overwritten: same size
        db.write_bytes(bytes(data))
        message = _refusal(store.client, uri + "?damaged")  # another URI: MLflow keeps opened stores
        assert f"the MLflow store {db} is damaged" in message and "restore a copy" in message

    def test_a_read_only_store_file_is_refused_before_a_run(self, tmp_path):
        from pipeline.preflight import check_tracking

        db = tmp_path / "store" / "mlflow.db"
        uri = _store(db)
        with read_only(db):
            message = _refusal(check_tracking, uri)
        assert f"{db} is read-only" in message and "MLFLOW_TRACKING_URI" in message

    def test_a_file_as_the_cache_and_a_read_only_artifacts_folder_are_refused(self, tmp_path):
        from pipeline.preflight import preflight

        outputs = tmp_path / "outputs"
        cfg = compose(["model=static", f"paths.outputs_dir={outputs}", f"mlflow.tracking_uri={_store(tmp_path / 'mlflow.db')}"])
        outputs.mkdir()
        (outputs / "cache").write_text("not a folder")
        message = _refusal(preflight, cfg)
        assert f"paths.cache_dir='{outputs}/cache' is a file" in message and "move the file away" in message
        (outputs / "cache").unlink()
        (outputs / "mlartifacts").mkdir()
        with read_only(outputs / "mlartifacts"):
            message = _refusal(preflight, cfg)
        assert f"mlflow.artifact_root='{outputs}/mlartifacts' is not writable" in message

    def test_read_only_run_folders_are_one_message_and_no_run(self, cli):
        runs = cli.root / "outputs" / "runs"
        runs.mkdir(parents=True)
        with read_only(runs):
            result = cli("k=0")
        assert result.returncode == 2, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and f"{runs}" in result.stderr and "not writable" in result.stderr
        assert result.stderr.count("error:") == 1

    def test_a_store_locked_by_another_writer_is_one_message_and_no_run_left_running(self, cli, tmp_path):
        import sqlite3

        mlflow.MlflowClient(cli.tracking_uri).create_experiment("hnpipe")
        holder = sqlite3.connect(cli.tracking_uri.split(":///", 1)[1], isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another writer, mid-transaction
        try:
            result = cli("k=0")
        finally:
            holder.rollback()
            holder.close()
        assert result.returncode == 2, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and result.stderr.count("error:") == 1
        assert "is locked by another writer" in result.stderr and cli.tracking_uri.split(":///", 1)[1] in result.stderr
        assert all(run.info.status != "RUNNING" for run in cli.all_runs())


def test_a_store_whose_disk_fills_up_is_one_message_first_and_the_run_ends_failed(cli, tmp_path):
    """The store on a 4 MB tmpfs filled up but for 100 kB: the run starts, and its metrics do not fit."""
    with small_filesystem(tmp_path / "small", "4m") as small:
        cli.tracking_uri = _store(small / "mlflow.db")  # created first, so what is left is known
        fill(small, leave=100 * 1024)
        result = cli("k=0")
        (small / "filler").unlink()
        assert result.returncode == 2, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines()
                  if line.startswith("error:") or "Error" in line or "disk is full" in line]
        assert errors[0].startswith(f"error: the disk refused a write to {small}/mlflow.db"), errors
        assert len(errors) == 1, errors
        (run,) = cli.runs()
        assert run.info.status == "FAILED" and "database or disk is full" in run.data.tags["error"]


def test_a_run_the_store_cannot_end_says_so_and_the_next_reaper_ends_it_with_its_cause(tmp_path):
    """In-process: the store's folder goes read-only while a run fails, so the run cannot be ended
    FAILED; then its process is made to look gone (the pid of one that has exited), and the next
    reaper ends it FAILED with the cause its process left in the run dir, not KILLED as "no longer
    exists"."""
    from omegaconf import open_dict

    from pipeline.hydra_ext.compose import compose as compose_job
    from pipeline.tracking import reaper
    from pipeline.tracking.provenance import process_tags
    from pipeline.tracking.recorder import recording

    uri = _store(tmp_path / "store" / "mlflow.db")
    cfg = compose_job(["model=static", f"mlflow.tracking_uri={uri}", f"paths.outputs_dir={tmp_path}/outputs"])
    with open_dict(cfg):
        cfg.paths.run_dir = str(tmp_path / "run")
    (tmp_path / "run").mkdir()
    with contextlib.ExitStack() as store_read_only:  # from inside the run until after it ended
        with pytest.raises(OSError) as failed, recording(cfg, process_tags() | {"hydra/output_dir": str(tmp_path / "run")}):
            store_read_only.enter_context(read_only(tmp_path / "store"))
            raise OSError(28, "No space left on device")  # the disk filled up, store included
    (note,) = failed.value.__notes__
    assert "could not be recorded FAILED in MLflow" in note and "stays RUNNING" in note
    assert mlflow.active_run() is None  # the next job of an in-process sweep can start its run
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("hnpipe").experiment_id])
    assert run.info.status == "RUNNING"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    client.set_tag(run.info.run_id, reaper.PID, str(gone.pid))
    assert reaper.reap(client, [run.info.experiment_id], "a test") == [run.info.run_id]
    ended = client.get_run(run.info.run_id)
    assert ended.info.status == "FAILED"
    assert ended.data.tags["error"].startswith("OSError: [Errno 28] No space left on device (ended FAILED: its process")
