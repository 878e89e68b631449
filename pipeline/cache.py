"""Stage cache: each stage's outputs keyed by everything that made them.

An entry is built in a temporary directory and renamed into place only when
complete, so a crash never leaves a half entry that reads as valid; a file
lock makes two jobs that need the same entry build it once. The completion
marker lists every file's sha256, so an entry damaged afterwards (a truncated
or edited file, a file gone) is not read as valid either: it is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from filelock import FileLock

_MARKER = "_complete.json"


def stage_key(stage: str, version: str, config, upstream: Sequence[str] = (), fingerprint: str = "") -> str:
    """Hash of (stage, its code version, its resolved config, upstream keys, input fingerprint)."""
    payload = json.dumps(
        {"stage": stage, "version": version, "config": config,
         "upstream": list(upstream), "fingerprint": fingerprint},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Entry:
    """A complete cache entry: where it lies, whether this run built it, and its build time."""

    stage: str
    key: str
    path: Path
    hit: bool
    build_s: float


def _sha256(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def _manifest(entry_dir: Path) -> dict[str, str | None]:
    """sha256 of every file under entry_dir but the marker, by relative path."""
    files = sorted(p for p in entry_dir.rglob("*") if p.is_file() and p.name != _MARKER)
    return {str(p.relative_to(entry_dir)): _sha256(p) for p in files}


def _intact(entry_dir: Path, files: dict[str, str]) -> bool:
    """Every file the marker lists is there, unchanged (files added later, e.g. datasets' caches, are ignored)."""
    return all(_sha256(entry_dir / name) == digest for name, digest in files.items())


class StageCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _read(self, stage: str, key: str, final: Path, hit: bool) -> Entry | None:
        marker = final / _MARKER
        if not marker.is_file():
            return None
        try:
            record = json.loads(marker.read_text())
            build_s, files = record["build_s"], record["files"]
        except (ValueError, KeyError, TypeError):
            return None
        if not _intact(final, files):
            return None
        return Entry(stage, key, final, hit, build_s)

    def lookup(self, stage: str, key: str) -> Entry | None:
        """The complete entry for (stage, key) if there is one; reads only, builds nothing."""
        return self._read(stage, key, self.root / stage / key, hit=True)

    @contextlib.contextmanager
    def claim(self, stage: str, key: str) -> Iterator[Path | None]:
        """Hold the entry's lock: yield a fresh temp dir to build (stage, key) into, or None if the
        entry is complete (built meanwhile by another job). A block that ends without an error
        commits the build: its files are hashed into the marker and the dir renamed into place."""
        final = self.root / stage / key
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            if self._read(stage, key, final, hit=True):
                yield None
                return
            tmp = final.parent / f".tmp-{key}"
            for stale in (tmp, final):  # leftovers of a killed build, or a corrupt entry
                if stale.exists():
                    shutil.rmtree(stale)
            tmp.mkdir()
            start = time.perf_counter()
            try:
                yield tmp
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            (tmp / _MARKER).write_text(json.dumps({"build_s": time.perf_counter() - start, "built_at": time.time(),
                                                   "files": _manifest(tmp)}))
            os.rename(tmp, final)

    def get_or_build(self, stage: str, key: str, build: Callable[[Path], None]) -> Entry:
        """The entry for (stage, key), built by `build(tmp_dir)` if absent or incomplete."""
        entry = self.lookup(stage, key)
        if entry:
            return entry
        with self.claim(stage, key) as tmp:
            if tmp is not None:
                build(tmp)
        entry = self.lookup(stage, key)
        if entry is None:
            raise OSError(f"the {stage} entry {key} was built but cannot be read back from {self.root}")
        return Entry(stage, key, entry.path, tmp is None, entry.build_s)
