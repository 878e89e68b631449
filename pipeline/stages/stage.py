"""What a stage is: a function of (its config, upstream outputs) -> outputs on disk, and for a
cached stage a declaration of what its outputs depend on, next to its code.

A `Stage` names the stage, its code version, the part of the config it reads, the stages whose
outputs it reads and anything else its outputs depend on (a file's contents, the model's
weights): its cache key is the hash of all of them (pipeline.cache.stage_key), so a change to
any of them rebuilds it and nothing else does. A `Context` is what every stage gets besides its
inputs: the config, the hardware, the stage cache and the run's result, where figures go as
they are measured.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from pipeline import parallel, progress
from pipeline.cache import Entry, StageCache, stage_key
from pipeline.result import RunResult


def resolved(node: DictConfig) -> dict:
    container = OmegaConf.to_container(node, resolve=True)
    assert isinstance(container, dict)
    return container


def _nothing(cfg: DictConfig) -> str:
    return ""


@dataclass(frozen=True)
class Stage:
    """A cached stage's declaration (see the module docstring). `collective`: its build encodes
    texts, so in a multi-process run every process takes part in it (pipeline.parallel)."""

    name: str
    version: str
    config: Callable[[DictConfig], Any]
    upstream: tuple[Stage, ...] = ()
    fingerprint: Callable[[DictConfig], str] = _nothing
    collective: bool = False


@dataclass
class Context:
    """A run (or plan mode) as the stages see it. `cfg` holds one data source in `data` (the
    run's own, or one of several: `for_source`); `keys` memoizes cache keys per stage."""

    cfg: DictConfig
    hardware: Any  # pipeline.config.hardware.Hardware
    result: RunResult
    plan: bool = False
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def cache(self) -> StageCache:
        return StageCache(self.cfg.paths.cache_dir)

    def key(self, stage: Stage) -> str:
        if stage.name not in self.keys:
            self.keys[stage.name] = stage_key(stage.name, stage.version, stage.config(self.cfg),
                                              [self.key(up) for up in stage.upstream], stage.fingerprint(self.cfg))
        return self.keys[stage.name]

    def is_cached(self, stage: Stage) -> bool:
        return self.cache.lookup(stage.name, self.key(stage)) is not None

    def cached(self, stage: Stage, build: Callable[[Path], None]) -> tuple[Entry, float]:
        """(the stage's entry, seconds this run spent getting it: a lookup on a hit, the build on a
        miss), shown as the stage starts and ends, its key and hit recorded on the result. In a
        multi-process run process 0 builds while the others wait, or with `collective` all build."""
        key = self.key(stage)
        with progress.stage(stage.name) as shown:
            start = time.perf_counter()
            entry = (_build_together if stage.collective else _build_on_main)(self.cache, stage.name, key, build)
            seconds = time.perf_counter() - start
            shown.note = "cache hit" if entry.hit else "cache miss: built"
        self.result.add({f"time/{stage.name}_build_s": entry.build_s},
                        {f"cache/{stage.name}_key": key, f"cache/{stage.name}_hit": str(entry.hit).lower()})
        return entry, seconds


def _build_on_main(cache: StageCache, name: str, key: str, build: Callable[[Path], None]) -> Entry:
    with parallel.main_first(f"building the {name} stage"):
        return cache.get_or_build(name, key, build) if parallel.is_main() else _as_hit(cache.lookup(name, key), name)


def _build_together(cache: StageCache, name: str, key: str, build: Callable[[Path], None]) -> Entry:
    """Process 0 claims the entry and says whether it needs building; then every process builds
    (their encoding is shared), process 0 into the entry, the others into a scratch dir."""
    if parallel.world_size() == 1:
        return cache.get_or_build(name, key, build)
    built = False
    if parallel.is_main():
        present = cache.lookup(name, key) is not None
        with contextlib.nullcontext(None) if present else cache.claim(name, key) as tmp:
            if parallel.broadcast(tmp is not None) and tmp is not None:
                build(tmp)
                built = True
    elif parallel.broadcast(None):
        with tempfile.TemporaryDirectory() as scratch:
            build(Path(scratch))
    with parallel.main_first(f"writing the {name} stage"):
        entry = _as_hit(cache.lookup(name, key), name)
    return Entry(name, key, entry.path, not built, entry.build_s)


def _as_hit(entry: Entry | None, name: str) -> Entry:
    if entry is None:
        raise parallel.PeerLost(f"process {parallel.rank()} cannot see the {name} entry process 0 built: every "
                                "process of a run must share paths.cache_dir (a shared filesystem).")
    return entry
