"""One launch = one run, across processes: who leads, and encoding shared by all of them.

Under `torchrun` / `accelerate launch --multi_gpu` (or a SLURM job with several
tasks) every process runs the pipeline. Process 0 leads: it owns the MLflow run,
builds the stage cache and scores the test set; the others train with it, and
while it encodes texts (for mining, for the base and test scores) they serve: each
encodes its share of whole batches and process 0 gathers them. Batches are the
ones a single process encodes, in the same order, so the result is bit-identical
to a single-process run and cache entries need no process count.

Waiting processes poll the launcher's key-value store instead of blocking in a
collective, so a long stretch of work on process 0 alone (building the split,
ranking candidates) never runs into the process group's timeout. In a single
process every function here is a no-op or runs locally.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from datetime import timedelta
from typing import Callable, Iterator, Sequence

import numpy as np

from pipeline.errors import PipelineError

# A collective waits this long for its peers (long stretches alone are spent polling the store).
TIMEOUT = timedelta(minutes=30)
_POLL_S = 0.2
_session = {"requests": 0, "leading": False}


def launched_world_size() -> int:
    """How many processes the launcher started (1 outside a multi-process launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def job_tasks() -> int:
    """Tasks of this job when submitit launched it (hydra/launcher=submitit_slurm or
    submitit_local): each task is one process of the run."""
    if "SUBMITIT_EXECUTOR" not in os.environ:
        return 1
    return int(os.environ.get("SLURM_NTASKS") or os.environ.get("SUBMITIT_LOCAL_NTASKS") or 1)


def adopt_job_tasks() -> bool:
    """In a SLURM (or submitit local) job of several tasks, each task is one process of the run:
    set the variables torchrun would have set (rank, world size, master) from the job's."""
    if job_tasks() <= 1 or "RANK" in os.environ:
        return False
    import submitit

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return True


def launcher() -> str:
    """Which launcher started this process, for the run's tags."""
    if any(key.startswith("ACCELERATE_") for key in os.environ):
        return "accelerate"
    if "TORCHELASTIC_RUN_ID" in os.environ:
        return "torchrun"
    if job_tasks() > 1:
        return "slurm" if "SLURM_JOB_ID" in os.environ else "submitit_local"
    return "none"


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    dist = _dist()
    return dist.get_world_size() if dist else 1


def rank() -> int:
    dist = _dist()
    return dist.get_rank() if dist else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def is_leading() -> bool:
    """Inside leading(): encode() is shared with the serving processes."""
    return _session["leading"]


def init(device: str) -> None:
    """Start the process group before anything else needs it (gloo on CPU, nccl on GPUs); the
    trainer later reuses it (accelerate only starts one where none is running)."""
    if launched_world_size() <= 1 or _dist():
        return
    import torch
    from accelerate import PartialState

    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    PartialState(cpu=cpu, timeout=TIMEOUT)


def backend() -> str:
    dist = _dist()
    return dist.get_backend() if dist else "none"


def broadcast(value):
    """Process 0's `value`, on every process."""
    dist = _dist()
    if not dist:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(value) -> list:
    dist = _dist()
    if not dist:
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def check_agreement(resolved_config: dict) -> None:
    """Every process must run the same config (an env var read differently per process, a
    different HNPIPE_ROOT on another node): refuse, before anything loads, if they differ."""
    digest = hashlib.sha256(json.dumps(resolved_config, sort_keys=True, default=str).encode()).hexdigest()
    digests = all_gather(digest)
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise PipelineError(f"the processes of this launch disagree on the config: process(es) {differ} "
                            "resolved it differently from process 0 (an interpolation such as "
                            "${oc.env:...} that differs per process or per node?). Give every process "
                            "the same config.")


def check_launch(device: str) -> None:
    """Refuse launches that would silently do something else than asked, before anything loads:
    `accelerate launch --cpu --num_processes N` (one process), hardware=cuda under a CPU launch,
    and more processes on a host than it has devices (`device`: hardware.device as configured)."""
    env = os.environ
    cpu_launch = env.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if cpu_launch and "MASTER_PORT" in env and "WORLD_SIZE" not in env:
        raise PipelineError(
            "`accelerate launch --cpu --num_processes N` starts ONE process, whatever N says. For N CPU "
            "processes use `accelerate launch --multi_gpu --num_processes N -m pipeline ...` (it runs "
            "N processes on the CPU with hardware=cpu) or `torchrun --standalone --nproc_per_node N -m "
            "pipeline ...`.")
    if cpu_launch and device in ("cuda", "tpu"):
        raise PipelineError(f"hardware={device} under `accelerate launch --cpu`, which trains on the CPU "
                            "whatever the config says: drop --cpu, or set hardware=cpu.")
    local = launched_local_world_size()
    if local <= 1:
        return
    import torch

    on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    devices, kind = (torch.cuda.device_count(), "CUDA devices") if on_gpu else \
        (len(os.sched_getaffinity(0)), "CPU cores")
    if local > devices:
        raise PipelineError(f"{local} processes on this host (--nproc_per_node / --num_processes) but it "
                            f"has {devices} {kind}: processes would share a device. Launch at most "
                            f"{devices}.")


def _store():
    import torch.distributed as dist

    return dist.distributed_c10d._get_default_store()


def _post(op: str) -> None:
    """Process 0: announce the next request (the others are polling for it)."""
    _store().set(f"hnpipe/request/{_session['requests']}", op)
    _session["requests"] += 1


def _next_request() -> str:
    """Another process: wait for process 0's next request, however long it takes."""
    key = f"hnpipe/request/{_session['requests']}"
    store = _store()
    while not store.check([key]):
        time.sleep(_POLL_S)
    _session["requests"] += 1
    return store.get(key).decode()


@contextlib.contextmanager
def leading() -> Iterator[None]:
    """Process 0 runs the block; encode() inside it is shared with the serving processes,
    which are released when the block ends."""
    if world_size() == 1:
        yield
        return
    _session["leading"] = True
    try:
        yield
    finally:
        _session["leading"] = False
        _post("release")


def serve(encode_batch: Callable[..., np.ndarray]) -> None:
    """Any process but 0: encode shares of process 0's requests until it leaves leading().
    `encode_batch(texts, batch_size, **options)` encodes one batch with this process's model."""
    while _next_request() == "encode":
        texts, batch_size, options = broadcast(None)
        _share(encode_batch, texts, batch_size, options)


def batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """Indices of the batches a text list is encoded in: longest texts first, as
    sentence-transformers orders them, so each batch pads to similar lengths."""
    order = np.argsort([-len(text) for text in texts], kind="stable")
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def _assemble(n: int, parts: list[np.ndarray], shares: list[dict[int, np.ndarray]]) -> np.ndarray:
    """One (n, dim) array from batches' embeddings, each row back at its text's index."""
    out = None
    for share in shares:
        for b, vectors in share.items():
            if out is None:
                out = np.empty((n, vectors.shape[1]), dtype=vectors.dtype)
            out[parts[b]] = vectors
    return out


def own_batches(count: int, shared: bool) -> range:
    """Which of `count` batches this process encodes: every world_size-th from its rank when the
    encoding is shared, else all of them."""
    return range(rank(), count, world_size()) if shared else range(count)


def _share(encode_batch, texts: Sequence[str], batch_size: int, options: dict,
           shared: bool = True) -> np.ndarray | None:
    """Encode this process's batches (own_batches); process 0 gets every batch, in text order."""
    parts = batches(texts, batch_size)
    mine = {b: encode_batch([texts[i] for i in parts[b]], batch_size, **options)
            for b in own_batches(len(parts), shared)}
    if not shared or world_size() == 1:
        return _assemble(len(texts), parts, [mine])
    shares = [None] * world_size() if is_main() else None
    _dist().gather_object(mine, shares, dst=0)
    return _assemble(len(texts), parts, shares) if is_main() else None


def encode(encode_batch: Callable[..., np.ndarray], texts: Sequence[str], batch_size: int,
           **options) -> np.ndarray:
    """Embeddings of `texts` (rows in text order), batch by batch; shared with the serving
    processes when process 0 is leading. `encode_batch(texts, batch_size, **options)` encodes
    one batch; the serving processes call their own with the same options (plain values)."""
    texts = list(texts)
    if not texts:
        raise ValueError("nothing to encode")
    if _session["leading"]:
        _post("encode")
        broadcast((texts, batch_size, options))
    return _share(encode_batch, texts, batch_size, options, shared=_session["leading"])
