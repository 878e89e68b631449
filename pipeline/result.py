"""What a run measured, gathered as it is measured.

The runner adds each stage's figures here the moment the stage ends; a sink (the
recorder, in tracking/) gets them at once, so a tracking UI shows a run while it
goes and a failed run keeps what it measured. The runner itself never talks to
the tracking backend: it only knows this class and the Sink protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol


class Sink(Protocol):
    """Where measured figures go as they are measured (pipeline.tracking.recorder.MlflowRecorder)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_input(self, context: str, rows, digest: str, data=None, source: str | None = None) -> None: ...


@dataclass
class RunResult:
    """A run's metrics, tags and per-step history, and where its outputs are on disk."""

    run_dir: Path
    sink: Sink | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    artifacts: list[tuple[Path, str]] = field(default_factory=list)  # (file, artifact folder)

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    def add(self, metrics: Mapping[str, float] | None = None, tags: Mapping[str, str] | None = None,
            step: int | None = None) -> None:
        """Record figures that hold for the whole run, and pass them on (at `step`: the last point
        of a curve that add_step drew)."""
        if metrics:
            self.metrics.update(metrics)
            if self.sink:
                self.sink.log_metrics(metrics, step=step)
        if tags:
            self.tags.update(tags)
            if self.sink:
                self.sink.set_tags(tags)

    def add_artifact(self, path: Path, folder: str) -> None:
        """A file the run's record keeps under `folder` (the recorder logs it when the run finishes)."""
        self.artifacts.append((path, folder))

    def add_input(self, context: str, rows, digest: str, data=None, source: str | None = None) -> None:
        """A dataset the run used ('train', 'dev', 'test': a datasets.Dataset), with a digest that
        changes whenever its rows do; from `data` (its source's data config), named `source` in a
        run of several sources; passed on, as the stage that made it ends."""
        if self.sink:
            self.sink.log_input(context, rows, digest, data, source)

    def add_step(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record figures measured at one training step (loss, dev metrics), and pass them on."""
        self.history.append((step, dict(metrics)))
        if self.sink:
            self.sink.log_metrics(metrics, step=step)
