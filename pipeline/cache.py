"""Stage cache: each stage's outputs keyed by everything that made them.

An entry is built in a temporary directory and renamed into place only when
complete, so a crash never leaves a half entry that reads as valid; a file
lock makes two jobs that need the same entry build it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from filelock import FileLock

_MARKER = "_complete.json"


def stage_key(stage: str, version: str, config, upstream: list[str] = (), fingerprint: str = "") -> str:
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


class StageCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _read(self, stage: str, key: str, final: Path, hit: bool) -> Entry | None:
        marker = final / _MARKER
        if not marker.is_file():
            return None
        try:
            build_s = json.loads(marker.read_text())["build_s"]
        except (ValueError, KeyError):
            return None
        return Entry(stage, key, final, hit, build_s)

    def lookup(self, stage: str, key: str) -> Entry | None:
        """The complete entry for (stage, key) if there is one; reads only, builds nothing."""
        return self._read(stage, key, self.root / stage / key, hit=True)

    def get_or_build(self, stage: str, key: str, build: Callable[[Path], None]) -> Entry:
        """The entry for (stage, key), built by `build(tmp_dir)` if absent or incomplete."""
        final = self.root / stage / key
        entry = self._read(stage, key, final, hit=True)
        if entry:
            return entry
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            entry = self._read(stage, key, final, hit=True)  # another job built it meanwhile
            if entry:
                return entry
            tmp = final.parent / f".tmp-{key}"
            for stale in (tmp, final):  # leftovers of a killed build, or a corrupt entry
                if stale.exists():
                    shutil.rmtree(stale)
            tmp.mkdir()
            start = time.perf_counter()
            try:
                build(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            build_s = time.perf_counter() - start
            (tmp / _MARKER).write_text(json.dumps({"build_s": build_s, "built_at": time.time()}))
            os.rename(tmp, final)
        return Entry(stage, key, final, False, build_s)
