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
from typing import Any, Callable, Iterator, Mapping

from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline import parallel, progress
from pipeline.cache import Entry, StageCache, stage_key
from pipeline.errors import PipelineError
from pipeline.result import RunResult


def resolved(node: DictConfig) -> dict:
    container = OmegaConf.to_container(node, resolve=True)
    assert isinstance(container, dict)
    return container


def _nothing(ctx: Context) -> str:
    return ""


@dataclass(frozen=True)
class Stage:
    """A cached stage's declaration (see the module docstring): `config(cfg)` is the part of the
    config its outputs depend on, `fingerprint(ctx)` what else (a file's contents, the model's
    identity). `collective`: its build encodes texts, so in a multi-process run every process
    takes part in it (pipeline.parallel)."""

    name: str
    version: str
    config: Callable[[DictConfig], Any]
    upstream: tuple[Stage, ...] = ()
    fingerprint: Callable[[Context], str] = _nothing
    collective: bool = False


@dataclass
class Context:
    """A run (or plan mode) as the stages see it. `cfg` holds one data source in `data`: the
    run's own, or in a run of several sources one of them (`sources`, whose figures, inputs and
    artifacts are then named after their source: split/de/train_rows). `keys` memoizes cache
    keys per stage; `model_id` is what identifies the base model's weights for cache keys (the
    driver sets it once the model exists: a static model may be trained on the data)."""

    cfg: DictConfig
    hardware: Any  # pipeline.config.hardware.Hardware
    result: RunResult
    plan: bool = False
    source: str | None = None
    model_id: str = ""
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def cache(self) -> StageCache:
        return StageCache(self.cfg.paths.cache_dir)

    @contextlib.contextmanager
    def naming_source(self) -> Iterator[None]:
        """A PipelineError raised inside names this source, in a run of several (`data source 'b': ...`)."""
        try:
            yield
        except PipelineError as exc:
            if self.source is None:
                raise
            raise PipelineError(f"data source {self.source!r}: {exc}") from None

    def sources(self) -> dict[str, Context]:
        """One Context per data source (pipeline.stages.sources.named); a run of one source gets
        itself, so its figures keep their names."""
        from pipeline.stages.sources import named

        views = named(self.cfg.data)
        if len(views) == 1 and next(iter(views.values())) is self.cfg.data:
            return {name: self for name in views}
        parts = {}
        for name, data in views.items():
            cfg = self.cfg.copy()
            with open_dict(cfg):
                cfg.data = data
            source = name if len(views) > 1 else None  # one source's figures keep their names
            parts[name] = Context(cfg, self.hardware, self.result, self.plan, source, self.model_id)
        return parts

    def named(self, name: str) -> str:
        """A figure's name for this source: split/train_rows -> split/de/train_rows."""
        if self.source is None:
            return name
        group, _, rest = name.partition("/")
        return f"{group}/{self.source}/{rest}"

    def add(self, metrics: Mapping[str, float] | None = None, tags: Mapping[str, str] | None = None) -> None:
        """Figures of this source (or of the run), onto the run's result as they are measured."""
        self.result.add({self.named(k): v for k, v in (metrics or {}).items()},
                        {self.named(k): v for k, v in (tags or {}).items()})

    def add_input(self, context: str, rows, digest: str) -> None:
        """A dataset this source trained or was scored on (train, dev, test)."""
        self.result.add_input(context, rows, digest, self.cfg.data, self.source)

    def add_artifact(self, path: Path, folder: str) -> None:
        self.result.add_artifact(path, folder if self.source is None else f"{folder}/{self.source}")

    def key(self, stage: Stage) -> str:
        if stage.name not in self.keys:
            self.keys[stage.name] = stage_key(stage.name, stage.version, stage.config(self.cfg),
                                              [self.key(up) for up in stage.upstream], stage.fingerprint(self))
        return self.keys[stage.name]

    def is_cached(self, stage: Stage) -> bool:
        return self.cache.lookup(stage.name, self.key(stage)) is not None

    def cached(self, stage: Stage, build: Callable[[Path], None], key: str | None = None) -> tuple[Entry, float]:
        """(the stage's entry, seconds this run spent getting it: a lookup on a hit, the build on a
        miss), shown as the stage starts and ends, its key and hit recorded on the result. In a
        multi-process run process 0 builds while the others wait, or with `collective` all build.
        `key`: for a stage whose inputs are every source's (a tokenizer trained on all of them)."""
        key = key or self.key(stage)
        shown_as = stage.name if self.source is None else f"{stage.name} ({self.source})"
        with progress.stage(shown_as) as shown:
            start = time.perf_counter()
            entry = (_build_together if stage.collective else _build_on_main)(self.cache, stage.name, key, build)
            seconds = time.perf_counter() - start
            shown.note = "cache hit" if entry.hit else "cache miss: built"
        self.add({f"time/{stage.name}_build_s": entry.build_s},
                 {f"cache/{stage.name}_key": key, f"cache/{stage.name}_hit": str(entry.hit).lower()})
        return entry, seconds


def roll_up(ctx: Context, parts: dict[str, Context], stages: tuple[str, ...]) -> None:
    """In a run of several sources, the run's own figure for each per-source stage: its time summed
    (time/<stage>_s) and its cache hit, true where every source's was."""
    if len(parts) == 1:
        return
    metrics, tags = {}, {}
    for name in stages:
        times = [ctx.result.metrics.get(part.named(f"time/{name}_s")) for part in parts.values()]
        if any(value is not None for value in times):
            metrics[f"time/{name}_s"] = sum(value for value in times if value is not None)
        hits = [ctx.result.tags.get(part.named(f"cache/{name}_hit")) for part in parts.values()]
        if any(hit is not None for hit in hits):
            tags[f"cache/{name}_hit"] = str(all(hit == "true" for hit in hits if hit is not None)).lower()
    ctx.result.add(metrics, tags)


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
