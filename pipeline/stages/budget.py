"""A compute budget per job (train.budget, in train.budget_unit): every job of a sweep spends the
same, so quality is compared at equal cost instead of at equal steps.

The budget decides the number of steps before the first one, so the learning-rate schedule
(warmup, decay) spans the run the budget buys; the data repeats for as many epochs as those
steps need. A step's cost comes from the run's own per-step counts:

- `texts`: texts embedded with gradients, every process's together (cost/step_texts_with_grad:
  negatives that are frozen or looked up in a bank cost nothing here);
- `tokens`: padded token-passes through the model, every process's together: a token embedded
  with gradients counts 3 (its forward and a backward of about two forwards' work), one without
  gradients 1; a proxy for FLOPs that does not depend on the machine;
- `seconds`: wall seconds of training on this machine (dev evaluation left out), measured by a
  few calibration steps on a copy of the model (the model itself starts training untouched);
  all processes train at once, so a multi-process job spends them together.

A bank refresh (tokens, seconds) is paid where the run takes one, after every
loss.bank_refresh_steps steps but the last: the steps bought are the most whose steps and
refreshes fit the budget, so a run shorter than one refresh interval pays for none.

What a run then actually spent is measured (`Spend`, as training goes) and logged beside every
dev evaluation, so quality can be drawn against compute.
"""

from __future__ import annotations

import bisect
import copy
import math
import statistics
import time

from omegaconf import DictConfig
from transformers import TrainerCallback

from pipeline import parallel
from pipeline.errors import PipelineError
from pipeline.stages import calibration, cost

UNITS = ("texts", "tokens", "seconds")
# A token embedded with gradients costs about three forwards' work (one forward, a backward of two).
WITH_GRAD = 3.0


def step_cost(cfg: DictConfig, step: dict[str, float]) -> float:
    """One step's cost in train.budget_unit (texts or tokens), every process together, from the
    cost model's per-step figures (pipeline.stages.cost.per_step)."""
    world = parallel.world_size()
    if cfg.train.budget_unit == "texts":
        return step.get("cost/step_texts_with_grad", step["cost/texts_per_step"]) * world
    with_grad = step["cost/step_tokens_padded_with_grad"]
    return (WITH_GRAD * with_grad + step["cost/step_tokens_padded"] - with_grad) * world


def refresh_cost(cfg: DictConfig, step: dict[str, float]) -> float:
    """One bank refresh's cost in train.budget_unit tokens (every process's together; texts: 0,
    a refresh embeds without gradients)."""
    if cfg.train.budget_unit != "tokens" or not cfg.loss.get("bank_refresh_steps"):
        return 0.0
    return step.get("cost/bank_refresh_tokens", 0.0) * parallel.world_size()


def seconds_per_step(cfg: DictConfig, hardware, model, train_ds, bank) -> tuple[float, float]:
    """(wall seconds of one step, of one bank refresh): a few real steps of the run's own trainer
    and loss, timed on a copy of the model, and a refresh timed on a sample of the bank (0 without
    refreshes). Process 0's measurement, so every process derives the same steps."""
    trial = copy.deepcopy(model)
    seconds = statistics.median(calibration.calibrate(cfg, hardware, trial, train_ds, bank=bank).seconds)
    refresh = calibration.refresh_seconds(trial, bank.corpus, cfg.miner.batch_size) \
        if bank is not None and cfg.loss.bank_refresh_steps else 0.0
    del trial
    return parallel.broadcast((seconds, refresh))


def steps_bought(cfg: DictConfig, per_step: float, per_refresh: float = 0.0) -> int:
    """The most whole steps whose cost, `per_step` each plus `per_refresh` for every bank refresh
    they take (cost.bank_refreshes), fits train.budget; one at least, or a PipelineError."""
    budget, unit = cfg.train.budget, cfg.train.budget_unit
    every = cfg.loss.get("bank_refresh_steps") or 0
    steps = bisect.bisect_right(range(1, math.floor(budget / per_step + 1e-9) + 1), budget + 1e-9 * per_step,
                                key=lambda n: n * per_step + cost.bank_refreshes(n, every) * per_refresh)
    if steps < 1:
        raise PipelineError(f"train.budget={budget:g} {unit} buys less than one training step: a step of this run "
                            f"costs {per_step:,.4g} {unit} (train.batch_size={cfg.train.batch_size}, k={cfg.k}). "
                            f"Raise train.budget to at least {per_step:,.4g}, or lower the batch or k.")
    return steps


class Spend(TrainerCallback):
    """The compute a run has spent so far, measured, in every unit: texts embedded with gradients
    and token-passes (what the loss fed the model, StepEmbeddingLoss.counts; every process taken
    to feed as much as this one: the end-of-run figures sum each process's own), and wall seconds
    of the steps themselves (from each step's start to its end, bank refreshes included; dev
    evaluations fall outside). A loss that embeds its own texts is taken at B * (2 + k) texts a
    step, and its tokens are not counted."""

    def __init__(self, texts_per_step: float, refresh_tokens: float = 0.0) -> None:
        self.losses: list = []  # the trainer's StepEmbeddingLoss modules, once built (train.fit)
        self.texts_per_step = texts_per_step
        self.refresh_tokens = refresh_tokens
        self.steps = 0
        self.step_seconds = 0.0
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_seconds += time.perf_counter() - self._start
        self.steps += 1

    def mine(self) -> dict[str, float]:
        """This process's spend so far (every source's loss, in a run of several)."""
        banks = [loss.bank for loss in self.losses if loss.bank is not None]
        spent = {"spent/seconds": self.step_seconds + sum(bank.refresh_seconds for bank in banks)}
        if not self.losses:
            return spent | {"spent/texts": self.steps * self.texts_per_step}
        texts = sum(loss.counts.total.texts_with_grad for loss in self.losses)
        padded = sum(loss.counts.total.tokens_padded for loss in self.losses)
        with_grad = sum(loss.counts.total.tokens_padded_with_grad for loss in self.losses)
        # refresh_tokens: every bank's, one refresh each (banks refresh at the same steps)
        passes = WITH_GRAD * with_grad + padded - with_grad + max((b.refreshes for b in banks), default=0) * \
            self.refresh_tokens
        return spent | {"spent/texts": float(texts), "spent/tokens": float(passes)}

    def figures(self) -> dict[str, float]:
        """The run's spend so far, every process's (texts and tokens: this one's times the processes)."""
        world = parallel.world_size()
        return {name: value if name == "spent/seconds" else value * world for name, value in self.mine().items()}

    def totals(self) -> dict[str, float]:
        """The run's spend at its end, each process's own summed (a collective: every process calls it)."""
        shares = parallel.all_gather(self.mine())
        return {name: max(share[name] for share in shares) if name == "spent/seconds"
                else sum(share[name] for share in shares) for name in shares[0]}
