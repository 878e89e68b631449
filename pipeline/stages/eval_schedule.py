"""When dev evaluation runs during training, and what each evaluation costs, measured.

The trainer's own `eval_steps` ratio rounds the interval up and adds an
evaluation at the last step, so the count drifts with the step count (every
0.2 of 6 steps evaluates 3 times, every 0.3 of 10 steps 4 times); the schedule
here gives exactly floor(1 / every) evaluations. The clock times
every `trainer.evaluate()` call end to end, so the eval fraction is measured
wall time, not an estimate.
"""

from __future__ import annotations

import logging
import time

from transformers import TrainerCallback

log = logging.getLogger(__name__)


class FractionSchedule(TrainerCallback):
    """Evaluate at round(i * every * total_steps) for i = 1 .. floor(1 / every)."""

    warning: str | None = None  # never fires late: round(every * total) is within training

    def __init__(self, every: float):
        self.every = every
        self.at_steps: set[int] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        count = int(1 / self.every + 1e-9)
        self.at_steps = {max(1, round(i * self.every * state.max_steps)) for i in range(1, count + 1)}

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.at_steps:
            control.should_evaluate = True
        return control


class StepsBeyondTraining(TrainerCallback):
    """Warns before the first step when eval.every exceeds all training steps.

    The trainer then evaluates only once, at the last step; the user should know why.
    """

    def __init__(self, every: float):
        self.every = every
        self.warning: str | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.every > state.max_steps:
            self.warning = (f"eval.every={self.every:g} is beyond the {state.max_steps} training steps: "
                            "dev evaluation runs once, at the end of training.")
            log.warning(self.warning)


class EvalClock:
    """Wraps `trainer.evaluate` to record each call's step, wall seconds and whether it ran in training."""

    def __init__(self, trainer):
        self.evals: list[dict] = []
        inner = trainer.evaluate

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.evals.append({"step": trainer.state.global_step,
                                   "seconds": time.perf_counter() - start,
                                   "in_train": bool(trainer.is_in_train)})

        trainer.evaluate = timed

    def ran_in_training(self) -> bool:
        return any(entry["in_train"] for entry in self.evals)
