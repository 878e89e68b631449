"""Helpers the tests share: real CLI runs in temp dirs with a real sqlite MLflow store, and
real Hydra composition. Fixtures that use them live in conftest.py."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

import warm

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small and fast: the static model, a few steps, a short max length, no second copy of the
# model in MLflow (tests that check the model logging ask for it).
FAST = ["model=static", "train.max_steps=6", "train.batch_size=16", "train.logging_steps=2",
        "eval=final", "eval.test_distractors=200", "data.max_rows=800", "mlflow.log_model=false"]


def _mount(*args: str) -> None:
    """mount(8) as root, or skip: the test needs what only a mount makes real for root."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"mount {' '.join(args)} failed: {result.stderr.strip()}")


@contextlib.contextmanager
def read_only(path: Path):
    """`path` (a file or a folder) read-only for this process and its children: its mode for a
    user; for root, whom modes do not stop, a read-only bind mount of it."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@contextlib.contextmanager
def small_filesystem(path: Path, size: str):
    """A tmpfs of `size` (e.g. 4m) mounted at `path`, which fills up as a real disk does (root only:
    skipped otherwise, with the reason)."""
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(folder: Path, leave: int) -> None:
    """Fill the filesystem of `folder` but for `leave` bytes."""
    stats = os.statvfs(folder)
    with open(folder / "filler", "wb") as handle:
        handle.write(b"\0" * (stats.f_bavail * stats.f_frsize - leave))


class Cli:
    """Runs `python -m pipeline` the way a user does, in its own outputs/ and MLflow store."""

    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.cache = cache
        self.tracking_uri = f"sqlite:///{root}/mlflow.db"

    def own_cache(self, path: Path) -> Path:
        """A stage cache of its own at `path` holding only the default data's harvest, as on a
        machine that has run the pipeline before: its stages build anew, the harvest is not redone."""
        shutil.copytree(self.cache / "harvest", path / "harvest")
        return path

    def env(self, **extra: str) -> dict[str, str]:
        return os.environ | {"HNPIPE_ROOT": str(self.root), "MLFLOW_TRACKING_URI": self.tracking_uri,
                             "PYTHONUNBUFFERED": "1"} | extra

    def __call__(self, *overrides: str, fast: bool = True, timeout: int = 600,
                 env: dict | None = None) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "pipeline", *(FAST if fast else []),
                f"paths.cache_dir={self.cache}", *overrides]
        return warm.run(args, cwd=ROOT, env=self.env(**(env or {})), timeout=timeout)

    def in_terminal(self, *overrides: str, timeout: int = 600) -> tuple[int, str]:
        """(exit code, everything shown) of `python -m pipeline` run on a pseudo-terminal of 120
        columns, as a user at a shell runs it."""
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        args = [sys.executable, "-m", "pipeline", *FAST, f"paths.cache_dir={self.cache}", *overrides]
        proc = warm.start(args, cwd=ROOT, env=self.env(TERM="xterm"), stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        shown, deadline = bytearray(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: the process and its children are done with it
                break
            if not chunk:
                break
            shown += chunk
        os.close(master)
        if time.monotonic() >= deadline:
            proc.kill()
        return proc.wait(timeout=60), shown.decode(errors="replace")

    def multirun(self, *overrides: str) -> subprocess.CompletedProcess:
        """`python -m pipeline -m ...`: Hydra wants -m before every override."""
        args = [sys.executable, "-m", "pipeline", "-m", *FAST, f"paths.cache_dir={self.cache}", *overrides]
        return warm.run(args, cwd=ROOT, env=self.env(), timeout=900)

    def interrupted_sweep(self, overrides: list[str], ready, signum: int, settle_s: float) -> tuple[int, str]:
        """(exit code, output) of `python -m pipeline -m ...` sent `signum` once its sweep.json
        exists (the store and the parent run do) and `ready(self)` holds, then `settle_s` later."""
        args = [sys.executable, "-m", "pipeline", "-m", *FAST, f"paths.cache_dir={self.cache}", *overrides]
        with open(self.root / "sweep.log", "w") as log, open(os.devnull) as null:
            proc = warm.start(args, cwd=ROOT, env=self.env(), stdin=null.fileno(), stdout=log.fileno(),
                              stderr=log.fileno())
        try:
            deadline = time.monotonic() + 300
            while not (any(self.root.glob("outputs/multirun/*/*/sweep.json")) and ready(self)):
                assert proc.poll() is None, (self.root / "sweep.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "timed out waiting for the sweep's runs"
                time.sleep(0.2)
            time.sleep(settle_s)
            proc.send_signal(signum)
            proc.wait(timeout=300)
        finally:
            proc.kill()
        return proc.returncode, (self.root / "sweep.log").read_text()

    def runs(self):
        """The job runs of the store, newest first (a sweep's parent run is left out)."""
        return [run for run in self.all_runs() if run.data.tags.get("sweep/parent") != "true"]

    def all_runs(self):
        """All runs of the store, sweep parent runs included, newest first."""
        import mlflow

        client = mlflow.MlflowClient(self.tracking_uri)
        experiments = client.search_experiments()
        return client.search_runs([e.experiment_id for e in experiments], order_by=["start_time DESC"])

    def summary(self, run) -> dict:
        return json.loads(Path(run.data.tags["hydra/output_dir"], "run_summary.json").read_text())


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def compose(overrides: list[str]):
    """The config `python -m pipeline OVERRIDES` would run, Hydra's own keys included."""
    from pipeline.hydra_ext.compose import compose as pipeline_compose

    return pipeline_compose(overrides, hydra_keys=True)


def assert_refused(overrides: list[str], words: list[str]) -> None:
    """Composing and validating the static-model config with these overrides is refused, the
    message saying each word (as the command line would print it)."""
    from pipeline.config.rules import validate
    from pipeline.errors import PipelineError

    with pytest.raises(PipelineError) as info:
        validate(compose(["model=static", *overrides]))
    for word in words:
        assert word in str(info.value)


def stage_keys(cfg) -> dict[str, str]:
    """The cache key of each cached stage config `cfg` runs (embed and mine only when k > 0)."""
    from pipeline.result import RunResult
    from pipeline.stages import embed, evaluate, mine, split
    from pipeline.stages.stage import Context

    ctx = Context(cfg, None, RunResult(Path(".")))
    stages = [split.STAGE, *((embed.STAGE, mine.STAGE) if cfg.k > 0 else ()), evaluate.BASE]
    return {stage.name: ctx.key(stage) for stage in stages}


def input_digests(cfg) -> dict[str, str]:
    """The digests of the train and dev dataset inputs a run of `cfg` logs."""
    from pipeline.result import RunResult
    from pipeline.stages import mine, split
    from pipeline.stages.stage import Context

    ctx = Context(cfg, None, RunResult(Path(".")))
    train = mine.train_digest(ctx) if cfg.k > 0 else split.part_digest(ctx, "train")
    return {"train": train, "dev": split.part_digest(ctx, "dev")}
