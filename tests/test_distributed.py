"""A real two-process launch on CPU (torchrun, gloo) is one run; bad launches stop with one message.

torchrun --standalone --nproc_per_node 2 starts two real processes here (accelerate launch --cpu
starts one, whatever --num_processes says: the pipeline refuses that).
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest

import warm
from helpers import FAST, ROOT

# Other processes: the command line, launchers, benchmarks (make test runs them; make check does not).
pytestmark = pytest.mark.slow

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))
TINY = [*FAST, "data.max_rows=600", "train.batch_size=8", "train.max_steps=4", "k=2"]


def _launch(cli, launcher: list[str], *overrides: str, cache: Path) -> subprocess.CompletedProcess:
    """`LAUNCHER -m pipeline ...` (a warm child where the launcher is this Python)."""
    return warm.run([*launcher, "-m", "pipeline", *TINY, f"paths.cache_dir={cache}", *overrides],
                    cwd=ROOT, env=cli.env(), timeout=600)


def _arrays(cache: Path, stage: str, name: str) -> dict:
    (path,) = cache.glob(f"{stage}/*/{name}")
    return dict(np.load(path)) if path.suffix == ".npz" else {"array": np.load(path)}


def test_two_cpu_processes_are_one_run_with_the_single_process_results(cli, tmp_path):
    marker = f"two-processes-{uuid.uuid4().hex[:8]}"
    many = _launch(cli, [TORCHRUN, "--standalone", "--nproc_per_node", "2"], f"preset={marker}",
                   "loss.gather_across_devices=true", cache=cli.own_cache(tmp_path / "many"))
    assert many.returncode == 0, many.stderr[-3000:]
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    (run,) = cli.runs()
    assert run.info.status == "FINISHED"
    tags, metrics = run.data.tags, run.data.metrics
    assert (tags["dist/world_size"], tags["dist/backend"], tags["dist/launcher"]) == ("2", "gloo", "torchrun")
    assert tags["hardware/device"] == "cpu"
    assert (metrics["train/batch_per_device"], metrics["train/global_batch"]) == (8, 16)
    assert (metrics["cost/score_rows"], metrics["cost/score_cols"]) == (8, 2 * 8 * (1 + 2))  # gathered
    (run_dir,) = cli.root.glob("outputs/runs/*/*")  # one run dir, one model, one .hydra
    assert (run_dir / "model" / "modules.json").is_file() and (run_dir / ".hydra").is_dir()
    assert json.loads((run_dir / "train_log.json").read_text())["global_step"] == 4

    one = _launch(cli, [sys.executable], cache=cli.own_cache(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    single = next(r for r in cli.runs() if r.info.run_id != run.info.run_id)
    assert set(single.data.metrics) == set(metrics) and single.data.tags["dist/world_size"] == "1"
    # Encoding was shared batch by batch: embeddings and mined candidates are bit-identical.
    for stage, name in (("embed", "corpus.npy"), ("embed", "queries.npy"), ("mine", "candidates.npz")):
        a, b = _arrays(tmp_path / "one", stage, name), _arrays(tmp_path / "many", stage, name)
        assert all(np.array_equal(a[key], b[key]) for key in a), (stage, name)


@pytest.mark.parametrize("launcher,overrides,words", [
    ([TORCHRUN, "--standalone", "--nproc_per_node", "2"], ["seed=${oc.env:RANK}"],
     ["disagree on the config", "process(es) [1]"]),
    ([TORCHRUN, "--standalone", "--nproc_per_node", str(len(os.sched_getaffinity(0)) + 1)], [],
     ["processes on this host", "CPU cores", "Launch at most"]),
    ([ACCELERATE, "launch", "--cpu", "--num_processes", "2"], [], ["starts ONE process", "torchrun --standalone"]),
    ([ACCELERATE, "launch", "--cpu"], ["hardware=cuda"], ["hardware=cuda under `accelerate launch --cpu`"]),
], ids=["processes_disagree", "more_processes_than_cores", "accelerate_cpu_is_one_process", "cuda_under_cpu_launch"])
@pytest.mark.fresh_store  # checks that no store is created
def test_a_bad_launch_stops_with_one_message_before_anything_loads(cli, tmp_path, launcher, overrides, words):
    result = _launch(cli, launcher, *overrides, cache=tmp_path / "cache")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and all(word in errors[0] for word in words), result.stderr[-3000:]
    # The launcher's own failure report may follow; nothing of the pipeline's raised past the message.
    assert "/pipeline/" not in result.stderr
    assert not (cli.root / "mlflow.db").exists() and not (tmp_path / "cache").exists()


@pytest.mark.fresh_store  # checks that no store is created
def test_a_sweep_under_torchrun_is_refused(cli, tmp_path):
    result = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "pipeline", "-m", *TINY,
                             f"paths.cache_dir={tmp_path}", "k=1,2"], cwd=ROOT, env=cli.env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "cannot run under torchrun" in result.stderr and "tasks_per_node" in result.stderr
    assert not (cli.root / "mlflow.db").exists()


def test_a_submitit_job_with_two_tasks_is_one_two_process_run(cli, tmp_path):
    result = cli.multirun("hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2",
                          "hydra.launcher.cpus_per_task=1", "k=0", "data.max_rows=600", "train.max_steps=4")
    assert result.returncode == 0, result.stderr[-3000:]
    (child,) = [r for r in cli.runs()]
    assert child.info.status == "FINISHED"
    assert (child.data.tags["dist/world_size"], child.data.tags["dist/launcher"]) == ("2", "submitit_local")


def test_a_slurm_task_gets_the_environment_torchrun_would_give_it(tmp_path):
    """No SLURM here: what a task of a 2-node x 4-GPU job sees, and the sbatch script for it."""
    env = os.environ | {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "8", "SLURM_JOB_NUM_NODES": "2",
                        "SLURM_NODEID": "1", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
                        "SLURM_JOB_NODELIST": "gpu[07-08]"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    probe = ("import json, os; from pipeline import parallel; adopted = parallel.adopt_job_tasks(); "
             "print(json.dumps({'adopted': adopted, 'launcher': parallel.launcher(), **{k: os.environ[k] "
             "for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR')}}))")
    seen = json.loads(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True,
                                     text=True, check=True).stdout)
    assert seen == {"adopted": True, "launcher": "slurm", "RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                    "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "gpu07"}

    from submitit.slurm.slurm import _make_sbatch_string  # what submitit writes for the launcher's keys

    script = _make_sbatch_string(command="python -u -m submitit.core._submit", folder=tmp_path, nodes=2,
                                 ntasks_per_node=4, gpus_per_node=4, cpus_per_task=8, time=120, partition="gpu")
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --partition=gpu"):
        assert line in script
    assert "srun" in script


def test_a_process_that_dies_is_one_line_from_process_0_and_the_run_ends_failed_saying_so(cli, tmp_path):
    marker = f"killed-rank-{uuid.uuid4().hex[:8]}"
    args = [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "pipeline", *TINY, f"preset={marker}",
            f"paths.cache_dir={cli.own_cache(tmp_path / 'cache')}", "k=0", "train.max_steps=100000"]
    with open(tmp_path / "launch.log", "w") as log:
        launch = subprocess.Popen(args, cwd=ROOT, env=cli.env(HNPIPE_PROGRESS_EVERY="0.5"), stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while "] train: " not in (tmp_path / "launch.log").read_text():  # the periodic progress line
            assert launch.poll() is None and time.monotonic() < deadline, (tmp_path / "launch.log").read_text()[-3000:]
            time.sleep(0.5)
        (rank_1,) = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])
                     and p.environ().get("RANK") == "1" and p.pid != launch.pid]
        rank_1.kill()
        launch.wait(timeout=300)
    finally:
        launch.kill()
    out = (tmp_path / "launch.log").read_text()
    assert launch.returncode != 0
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "process 1 of 2 stopped" in errors[0], out[-5000:]
    assert "Connection reset by peer" not in out and "/pipeline/" not in out, out[-5000:]
    (run,) = cli.runs()
    assert run.info.status == "FAILED" and "process 1 of 2 stopped" in run.data.tags["error"]
