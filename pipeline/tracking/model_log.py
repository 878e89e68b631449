"""The fine-tuned model as part of the run, so that anyone who can open the run can load it.

Logged through MLflow's sentence_transformers flavor (an MLflow "logged model" linked
to the run); should the flavor fail, the saved files go in as plain artifacts under
model/ instead. Either way the run's `model/load` tag (names.MODEL_LOAD) holds the one line that loads it.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

from pipeline import redact
from pipeline.names import MODEL_LOAD, MODEL_URI

log = logging.getLogger(__name__)
ARTIFACT = "model"
_NEEDS = ("sentence-transformers", "transformers", "torch")


def pinned_requirements() -> list[str]:
    """What the model needs, pinned to this environment (local labels like +cpu dropped). Passing
    them skips MLflow's requirement inference, which loads the model in a subprocess (15 s)."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in _NEEDS]


def log_model(model_dir: Path, run_id: str) -> dict[str, str]:
    """Log the model saved in `model_dir` with the active run; return the tags saying how to load it."""
    import mlflow

    uri = f"runs:/{run_id}/{ARTIFACT}"
    try:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(model_dir), device="cpu")
        mlflow.sentence_transformers.log_model(model, name=ARTIFACT, pip_requirements=pinned_requirements())
        load = f"mlflow.sentence_transformers.load_model({uri!r})"
    except Exception as exc:  # the flavor's own failure: keep the model anyway, as files
        log.warning("MLflow's sentence_transformers flavor could not log the model (%s: %s); its files are "
                    "logged as artifacts under %s/ instead", type(exc).__name__, redact.text(str(exc))[:300],
                    ARTIFACT)
        mlflow.log_artifacts(str(model_dir), ARTIFACT)
        load = f"SentenceTransformer(mlflow.artifacts.download_artifacts({uri!r}))"
    return {MODEL_URI: uri, MODEL_LOAD: load}
