"""loss.chunk_budget=auto: chunks of similar length or one big forward, whichever is faster here.

Length-aware chunks save padding work but cut a step into many small forwards: faster on a
CPU (measured), maybe slower on a GPU, where a forward of a few rows leaves the device idle (a
guess: no GPU has measured it). `auto` measures it on the run's own texts: on the first
training steps it times both ways of embedding that step's texts, forward only, and keeps the
faster for the rest of the run. Both give the same embeddings (StepEmbedder's exactness), so
only speed depends on the choice.

Where timing is not possible (a lazy XLA device, StaticEmbedding's flat token stream with
nothing to chunk, a run that ends during the trial steps) the choice is the device kind's
guess: chunks on a CPU (measured faster there), one forward elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn

from pipeline.config.losses import CHUNK_BUDGET
from pipeline.names import CHUNK_BUDGET_CHOSEN, CHUNK_BUDGET_HOW

# Training steps that time both ways; the first is a warm-up (kernels, allocator) left out.
TRIAL_STEPS = 3


def guess(device_type: str, chunked: int) -> int | None:
    """The budget the device kind suggests without a measurement: `chunked` on a CPU (measured
    faster there), None (one forward) elsewhere (a guess: no GPU has measured it)."""
    return chunked if device_type == "cpu" else None


def from_config(value: int | str, max_seq_length: int) -> int | AutoBudget:
    """loss.chunk_budget as StepEmbedder takes it; auto's chunks hold at least the longest text."""
    return AutoBudget(max(CHUNK_BUDGET, max_seq_length)) if value == "auto" else int(value)


def planned(value: int | str, max_seq_length: int, device_type: str) -> int | None:
    """The budget the cost model predicts with: the configured one, or for auto the device kind's guess."""
    return guess(device_type, max(CHUNK_BUDGET, max_seq_length)) if value == "auto" else int(value)


def shown(budget: int | None) -> str:
    return "one forward" if budget is None else str(budget)


@contextmanager
def _timing_mode(model: nn.Module):
    """Forward only, dropout off: a trial forward neither trains nor draws random numbers, so the
    run's own steps are what they would be without it."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(training)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class AutoBudget:
    """Times `chunked` against one forward on the first TRIAL_STEPS training steps, then keeps the
    faster; `chosen` and `how` say what it picked and why (for the run's record)."""

    def __init__(self, chunked: int) -> None:
        self.chunked = chunked
        self.seconds: dict[int | None, float] = {chunked: 0.0, None: 0.0}
        self.trials = 0
        self.chosen: int | None = chunked
        self.how = ""  # empty while undecided

    @property
    def deciding(self) -> bool:
        return not self.how

    def start(self, device: torch.device, flat: bool) -> int | None:
        """The budget before the first step: the guess, decided at once where timing is not possible."""
        self.chosen = guess(device.type, self.chunked)
        if flat:
            self.how = "nothing to chunk: a flat token stream (StaticEmbedding)"
        elif device.type not in ("cpu", "cuda"):
            self.how = f"device kind {device.type}'s guess: timing a lazy device is not possible"
        return self.chosen

    def trial(self, model: nn.Module, device: torch.device, embed: Callable[[int | None], object]) -> int | None:
        """Time `embed(budget)` both ways on this step's texts (the order alternating, so neither
        always runs warm); the budget the step then trains with."""
        order = [self.chunked, None] if self.trials % 2 == 0 else [None, self.chunked]
        with _timing_mode(model):
            for budget in order:
                _sync(device)
                start = time.perf_counter()
                embed(budget)
                _sync(device)
                if self.trials:  # the first trial step warms up
                    self.seconds[budget] += time.perf_counter() - start
        self.trials += 1
        if self.trials == TRIAL_STEPS:
            self.chosen = min(self.seconds, key=lambda budget: self.seconds[budget])
            self.how = (f"measured over {TRIAL_STEPS - 1} steps: chunks of {self.chunked} "
                        f"{self.seconds[self.chunked]:.4f} s, one forward {self.seconds[None]:.4f} s")
        return self.chosen

    def record(self) -> dict[str, str]:
        """The choice as tags (a run that ended while deciding kept the device kind's guess)."""
        how = self.how or f"the device kind's guess: training ended after {self.trials} of {TRIAL_STEPS} trial steps"
        return {CHUNK_BUDGET_CHOSEN: shown(self.chosen), CHUNK_BUDGET_HOW: how}
