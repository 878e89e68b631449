"""What MLflow keeps of a run, read back from a real sqlite store: curves logged during
training, the data as dataset inputs, the model (loadable), system metrics on request."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
from sentence_transformers import SentenceTransformer

from helpers import FAST, compose, input_digests, write_jsonl


def _inputs(cli, run) -> dict:
    """{context: the dataset} of a run's dataset inputs."""
    full = mlflow.MlflowClient(cli.tracking_uri).get_run(run.info.run_id)
    return {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
            for i in full.inputs.dataset_inputs}


def test_training_curves_are_logged_once_per_step(piped_run):
    cli, _, run = piped_run
    client = mlflow.MlflowClient(cli.tracking_uri)
    loss = client.get_metric_history(run.info.run_id, "train/loss")
    assert [point.step for point in loss] == [2, 4, 6]  # train.logging_steps=2, 6 steps: no duplicates
    dev = client.get_metric_history(run.info.run_id, "dev/ndcg_at_10")
    assert [point.step for point in dev] == [6] and 0 <= dev[0].value <= 1
    assert [point.step for point in client.get_metric_history(run.info.run_id, "train/learning_rate")] == [2, 4, 6]


def test_train_dev_and_test_are_dataset_inputs_with_digests_sizes_and_source(piped_run):
    cli, _, run = piped_run
    inputs = _inputs(cli, run)
    assert set(inputs) == {"train", "dev", "test"}
    metrics = run.data.metrics
    rows = {"train": metrics["mine/rows_out"], "dev": metrics["split/dev_rows"], "test": metrics["test/queries"]}
    cfg = compose([*FAST, "k=2", f"paths.cache_dir={cli.cache}"])
    digests = input_digests(cfg)
    # the test set's digest is its fingerprint, the one its per-query scores carry
    digests["test"] = json.loads(Path(run.data.tags["model_dir"]).parent.joinpath(
        "test", "per_query.json").read_text())["test_set"]
    for context, dataset in inputs.items():
        assert dataset.name == f"docstrings/{context}"
        assert dataset.digest == digests[context]  # from the stage-cache keys, not the first 10k rows
        assert json.loads(dataset.profile)["num_rows"] == rows[context]
        assert dataset.source_type == "code" and "docstrings harvested from" in dataset.source
    assert len(set(digests.values())) == 3


def test_a_run_on_other_data_has_other_digests_and_names_its_file(piped_run, cli, tmp_path):
    rows = [{"anchor": f"how do I do thing {i}", "positive": f"module.thing_{i}\nDoes thing {i}."}
            for i in range(300)]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    result = cli("data=files", f"data.path={data}", "k=2", "train.max_steps=1")
    assert result.returncode == 0, result.stderr[-3000:]
    (other,) = cli.runs()
    first, second = _inputs(piped_run[0], piped_run[2]), _inputs(cli, other)
    for context in ("train", "dev", "test"):
        assert first[context].digest != second[context].digest, context
        assert second[context].name == f"pairs.jsonl/{context}"
        assert json.loads(second[context].source) == {"uri": data.resolve().as_uri()}


def test_the_model_loads_back_from_mlflow_and_embeds_as_saved(piped_run):
    cli, _, run = piped_run
    run_id = run.info.run_id
    assert run.data.tags["model/uri"] == f"runs:/{run_id}/model"
    assert run.data.tags["model/load"] == f"mlflow.sentence_transformers.load_model('runs:/{run_id}/model')"
    mlflow.set_tracking_uri(cli.tracking_uri)
    logged = mlflow.sentence_transformers.load_model(f"runs:/{run_id}/model")
    saved = SentenceTransformer(run.data.tags["model_dir"], device="cpu")
    texts = ["Return the indices of the maximum values along an axis.", "numpy.argmax\nReturns the indices."]
    assert np.array_equal(logged.encode(texts), saved.encode(texts))
    assert cli.summary(run)["model_uri"] == f"runs:/{run_id}/model"


def test_system_metrics_are_logged_on_request(piped_run):
    _, _, run = piped_run
    assert "system/cpu_utilization_percentage" in run.data.metrics
    assert "system/system_memory_usage_megabytes" in run.data.metrics


def test_a_model_the_flavor_cannot_log_is_kept_as_files(tmp_path):
    """Not a model sentence-transformers can load: the files go in as artifacts, and the load line says so."""
    from pipeline.tracking.model_log import log_model

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(b"\0" * 64)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    with mlflow.start_run() as active:
        tags = log_model(model_dir, active.info.run_id)
    run_id = active.info.run_id
    download = f"mlflow.artifacts.download_artifacts('runs:/{run_id}/model')"
    assert tags["model/load"] == f"SentenceTransformer({download})"
    listed = mlflow.MlflowClient().list_artifacts(run_id, "model")
    assert [a.path for a in listed] == ["model/weights.bin"]


def test_parallel_jobs_logging_the_same_dataset_at_once_all_keep_it(tmp_path):
    """Joblib sweep jobs on one data set log the same dataset input at the same moment; MLflow's
    lookup-then-insert races, and each job must still end up with the input (data_inputs retries)."""
    import threading

    import datasets
    from omegaconf import OmegaConf

    from pipeline.tracking.data_inputs import log_input

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("race")
    rows = datasets.Dataset.from_dict({"anchor": ["a", "b"], "positive": ["c", "d"]})
    data_cfg = OmegaConf.create({"source": "docstrings", "packages": []})
    start, errors, run_ids = threading.Barrier(6), [], []

    def job():
        try:
            with mlflow.start_run(experiment_id=experiment) as run:
                run_ids.append(run.info.run_id)
                start.wait()
                log_input(data_cfg, "dev", rows, "same-digest")
        except Exception as exc:  # reported below, with the job's traceback gone but its message kept
            errors.append(repr(exc)[:300])

    threads = [threading.Thread(target=job) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    client = mlflow.MlflowClient()
    for run_id in run_ids:
        (dataset_input,) = client.get_run(run_id).inputs.dataset_inputs
        assert dataset_input.dataset.digest == "same-digest"
