"""One launch = one run, across processes: every process runs the same code (SPMD).

Under `torchrun` / `accelerate launch --multi_gpu` (or a SLURM job with several tasks) every
process runs the whole pipeline. Three things differ by process, and only here:

- encoding is a collective (`encode`): every process calls it at the same point with the same
  texts, encodes its share of whole batches, and all of them get every batch back, in text
  order. Batches are the ones a single process encodes, so the result is bit-identical to a
  single-process run and cache entries need no process count;
- a cache entry is built by process 0 while the others wait (`main_first`), a bounded wait
  that says what it waits for; an entry whose build encodes (`collective=True`) is built by
  all of them together, process 0 writing it;
- process 0 alone records the run and writes its files.

A process that dies makes the others' next collective fail; `peer_lost` turns that failure
into one message naming the process, so the run ends FAILED with the reason, not RUNNING. In
a single process every function here is a no-op or runs locally.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from datetime import timedelta
from typing import Callable, Iterator, Sequence

import numpy as np

from pipeline import pids, signals
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)
# The longest any process waits for the others (a collective, or process 0 building an entry).
TIMEOUT = timedelta(minutes=30)
# How often a waiting process says that it is still waiting, and for what.
_REPORT_EVERY_S = 60.0
_waits = {"count": 0}


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


def init(device: str) -> None:
    """Start the process group before anything else needs it (gloo on CPU, nccl on GPUs); the
    trainer later reuses it (accelerate only starts one where none is running). Each process
    leaves its pid in the launcher's store, so a lost process can be named."""
    if launched_world_size() <= 1 or _dist():
        return
    import torch
    from accelerate import PartialState

    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    PartialState(cpu=cpu, timeout=TIMEOUT)
    _store().set(f"hnpipe/pid/{rank()}", f"{os.uname().nodename} {os.getpid()}")
    signals.on_interrupt(_stopped_for_a_lost_peer)


def _stopped_for_a_lost_peer() -> bool:
    """A launcher stops the other processes (torchrun: SIGTERM) as soon as one dies, often before
    their next collective fails: that stop is the lost peer's PeerLost, not an interruption; and
    where this process is stopping for a PeerLost already, the signal adds nothing (raised in the
    ending of the run, it left the run RUNNING; at exit, a traceback)."""
    if _stopping:
        return True
    if lost_peers():
        raise PeerLost(peer_message("this run went on"))
    return False


def backend() -> str:
    dist = _dist()
    return dist.get_backend() if dist else "none"


def _store():
    import torch.distributed as dist

    return dist.distributed_c10d._get_default_store()


def broadcast(value):
    """Process 0's `value`, on every process."""
    dist = _dist()
    if not dist:
        return value
    box = [value]
    with peer_lost("sharing a value"):
        dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(value) -> list:
    dist = _dist()
    if not dist:
        return [value]
    values = [None] * dist.get_world_size()
    with peer_lost("gathering a value"):
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


class PeerLost(PipelineError):
    """Another process of this run stopped: the run cannot go on (the first one made is the one
    this process stops for)."""

    def __init__(self, message: str):
        super().__init__(message)
        _stopping.append(self)


_stopping: list[PeerLost] = []


def lost_peers() -> list[int]:
    """The processes of this run on this host whose pid is gone (from the pids in the store)."""
    here, gone = os.uname().nodename, list[int]()
    for other in range(world_size()):
        try:
            host, pid = _store().get(f"hnpipe/pid/{other}").decode().split()
        except Exception:  # the store itself is gone with process 0's launcher: nothing to name
            return gone
        if host == here and not pids.alive(int(pid)):
            gone.append(other)
    return gone


def _lost_peers_settled(wait_s: float = 2.0) -> list[int]:
    """lost_peers(), given a moment: a killed process's sockets close, failing the collective,
    before its pid is gone."""
    deadline = time.monotonic() + wait_s
    while not (gone := lost_peers()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return gone


def peer_message(doing: str, detail: str = "") -> str:
    """What to tell the user when a collective failed because another process stopped."""
    gone = _lost_peers_settled()
    who = f"process {', '.join(map(str, gone))} of {world_size()}" if gone else "another process of this run"
    log_hint = "; its own log, pipeline.rank<N>.log in the run dir, says why" if gone != [0] else ""
    why = f" ({detail})" if detail else ""
    return f"{who} stopped while {doing}{why}{log_hint}. This process stops too; the run ends FAILED."


def _is_peer_failure(exc: BaseException) -> bool:
    """Whether a collective failed because a peer went away (gloo / nccl / the store say so)."""
    import torch.distributed as dist

    words = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL communicator was aborted",
             "Socket Timeout", "connection refused", "Connection refused", "timed out")
    return isinstance(exc, getattr(dist, "DistError", ())) or (
        isinstance(exc, RuntimeError) and any(word in str(exc) for word in words))


@contextlib.contextmanager
def peer_lost(doing: str) -> Iterator[None]:
    """Turn a collective's failure caused by a lost process into a PeerLost naming it."""
    if world_size() == 1:
        yield
        return
    try:
        yield
    except Exception as exc:
        if not _is_peer_failure(exc):
            raise
        raise PeerLost(peer_message(doing)) from exc  # gloo's words ("Connection reset by peer") say less


def _wait_for(key: str, what: str) -> str:
    """Wait (bounded by TIMEOUT, reported every minute) until process 0 sets `key`; its value."""
    from datetime import timedelta as seconds

    store, start = _store(), time.monotonic()
    while True:
        try:
            store.wait([key], seconds(seconds=_REPORT_EVERY_S))
            return store.get(key).decode()
        except Exception as exc:  # the wait timed out (report and go on), or the store is gone
            waited = time.monotonic() - start
            if "timeout" not in str(exc).lower() and "timed out" not in str(exc).lower():
                raise PeerLost(peer_message(f"process {rank()} waited for process 0 ({what})", str(exc)[:200])) from exc
            if waited >= TIMEOUT.total_seconds():
                raise PeerLost(f"process {rank()} waited {waited / 60:.0f} min for process 0 ({what}) and gives "
                               "up: is process 0 stuck, or on a machine that cannot see this one's outputs "
                               "folder?") from None
            log.info("process %d: still waiting for process 0 (%s), %.0f s so far", rank(), what, waited)


@contextlib.contextmanager
def main_first(what: str) -> Iterator[None]:
    """Process 0 runs the block first; the others wait (bounded, reported) and then run it
    themselves (reading what process 0 built). A failure on process 0 releases them with it."""
    if world_size() == 1:
        yield
        return
    key = f"hnpipe/main_first/{_waits['count']}"
    _waits["count"] += 1
    if is_main():
        try:
            yield
        except BaseException:
            _store().set(key, "failed")
            raise
        _store().set(key, "done")
        return
    if _wait_for(key, what) == "failed":
        raise PeerLost(f"process 0 failed while {what}; its message says why. This process stops too.")
    yield


def batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """Indices of the batches a text list is encoded in: longest texts first, as
    sentence-transformers orders them, so each batch pads to similar lengths."""
    order = np.argsort([-len(text) for text in texts], kind="stable")
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def own_batches(count: int, shared: bool = True) -> range:
    """Which of `count` batches this process encodes: every world_size-th from its rank when the
    encoding is shared, else all of them."""
    return range(rank(), count, world_size()) if shared else range(count)


def encode(encode_batch: Callable[[list[str]], np.ndarray], texts: Sequence[str], batch_size: int,
           shared: bool = True) -> np.ndarray:
    """(len(texts), dim) embeddings, row i for texts[i], batch by batch; `encode_batch(batch)`
    encodes one batch. Shared, it is a collective: every process calls it with the same texts,
    encodes its share and gets the whole result; else this process encodes it all."""
    texts = list(texts)
    if not texts:
        raise ValueError("nothing to encode")
    parts = batches(texts, batch_size)
    mine = {b: encode_batch([texts[i] for i in parts[b]]) for b in own_batches(len(parts), shared)}
    shares = all_gather(mine) if shared and world_size() > 1 else [mine]
    first = next(vectors for share in shares for vectors in share.values())
    out = np.empty((len(texts), first.shape[1]), dtype=first.dtype)
    for share in shares:
        for b, vectors in share.items():
            out[parts[b]] = vectors
    return out
