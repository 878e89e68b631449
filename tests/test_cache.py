"""The stage cache never serves a half-built or damaged entry, and builds each key once."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT
from pipeline.cache import StageCache

# A build, run in its own process, that writes part of its output, says so, then waits to be killed.
_SLOW_BUILD = """
import sys, time
from pathlib import Path
from pipeline.cache import StageCache

def build(out):
    (out / "part.txt").write_text("half")
    Path(sys.argv[2]).write_text("started")
    time.sleep(600)

StageCache(sys.argv[1]).get_or_build("stage", "key", build)
"""

# A build that counts how often it ran, so racing processes can show it ran once.
_COUNTED_BUILD = """
import sys, time
from pathlib import Path
from pipeline.cache import StageCache

def build(out):
    with open(sys.argv[2], "a") as log:
        log.write("built\\n")
    time.sleep(1)
    (out / "data.txt").write_text("done")

entry = StageCache(sys.argv[1]).get_or_build("stage", "key", build)
print(entry.hit, (entry.path / "data.txt").read_text())
"""


def _python(script: str, *args: str) -> list[str]:
    return [sys.executable, "-c", script, *map(str, args)]


def _write(text: str):
    def build(out: Path) -> None:
        (out / "data.txt").write_text(text)
        (out / "sub").mkdir()
        (out / "sub" / "more.bin").write_bytes(b"\x00" * 100)
    return build


def test_a_build_killed_midway_leaves_no_valid_entry(tmp_path):
    started = tmp_path / "started"
    proc = subprocess.Popen(_python(_SLOW_BUILD, tmp_path / "cache", started), cwd=ROOT,
                            env=os.environ | {"PYTHONPATH": str(ROOT)})
    try:
        for _ in range(600):
            if started.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert started.exists(), "the build never started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    assert not (tmp_path / "cache" / "stage" / "key").exists()
    entry = StageCache(tmp_path / "cache").get_or_build("stage", "key", _write("fresh"))
    assert not entry.hit  # rebuilt; the killed job's lock was released with it
    assert (entry.path / "data.txt").read_text() == "fresh"
    assert not (entry.path / "part.txt").exists()
    assert [p.name for p in entry.path.parent.iterdir() if p.name.startswith(".tmp")] == []


@pytest.mark.parametrize("damage", ["truncate", "edit", "delete", "no_marker", "bad_marker"])
def test_a_damaged_entry_is_rebuilt(tmp_path, damage):
    cache = StageCache(tmp_path)
    first = cache.get_or_build("stage", "key", _write("original"))
    marker = first.path / "_complete.json"
    if damage == "truncate":
        (first.path / "sub" / "more.bin").write_bytes(b"\x00" * 10)
    elif damage == "edit":
        (first.path / "data.txt").write_text("tampered")
    elif damage == "delete":
        (first.path / "data.txt").unlink()
    elif damage == "no_marker":
        marker.unlink()
    else:
        marker.write_text("{not json")

    again = cache.get_or_build("stage", "key", _write("rebuilt"))
    assert not again.hit
    assert (again.path / "data.txt").read_text() == "rebuilt"
    assert cache.get_or_build("stage", "key", _write("unused")).hit


def test_a_hit_reports_the_original_build_time_and_ignores_added_files(tmp_path):
    cache = StageCache(tmp_path)
    built = cache.get_or_build("stage", "key", _write("x"))
    (built.path / "cache-added-later.arrow").write_text("datasets may add cache files")
    hit = cache.get_or_build("stage", "key", _write("unused"))
    assert hit.hit and hit.build_s == built.build_s
    assert json.loads((hit.path / "_complete.json").read_text())["build_s"] == built.build_s


def test_two_jobs_needing_the_same_key_build_it_once(tmp_path):
    log = tmp_path / "builds.log"
    procs = [subprocess.Popen(_python(_COUNTED_BUILD, tmp_path / "cache", log), cwd=ROOT,
                              env=os.environ | {"PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert log.read_text() == "built\n"
    assert outputs == ["False done", "True done"]
