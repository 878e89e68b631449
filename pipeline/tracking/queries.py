"""The report's reads and writes of the MLflow store: which runs a report covers, their
per-query test scores, and logging the report's files on the sweep's parent run."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.names import CONFIG_HASH, PARENT_RUN, PER_QUERY_ARTIFACT, REUSED, SWEEP_ID, SWEEP_OVERRIDES, SWEEP_PARENT


def _sweeps(client, experiment_id: str) -> list:
    return client.search_runs([experiment_id], f"tags.`{SWEEP_PARENT}` = 'true'",
                              order_by=["attributes.start_time DESC"], max_results=20)


def _sweep_list(sweeps) -> str:
    if not sweeps:
        return "there are no sweeps yet (run one: python -m pipeline -m +experiment=sweep_k_quick)"
    return "sweeps there, newest first: " + "; ".join(
        f"{s.data.tags[SWEEP_ID]} ({s.info.status}, {s.data.tags.get(SWEEP_OVERRIDES, '')})"
        for s in sweeps)


def _search(client, experiment_id: str, filter_string: str, user_filter: str | None) -> list:
    """search_runs; a filter MLflow cannot parse is the user's --filter, said so."""
    from mlflow.exceptions import MlflowException

    try:
        return client.search_runs([experiment_id], filter_string, max_results=5000)
    except MlflowException as exc:
        if user_filter is None:
            raise
        raise PipelineError(f"--filter {user_filter!r}: MLflow cannot use it ({exc.message.splitlines()[0]}). "
                            "Write it as MLflow's search syntax, e.g. \"params.k = '8'\" or "
                            "\"params.`model.kind` = 'static'\".") from None


def select_runs(client, tracking_uri: str, experiment_name: str, sweep_id: str | None,
                filter_string: str | None):
    """FINISHED runs to report on, and the sweep's parent run (None with --filter); runs whose
    process is provably gone are ended KILLED first (pipeline.tracking.reaper)."""
    from pipeline.tracking import reaper, store

    experiment = store.find_experiment(client, tracking_uri, experiment_name)
    if experiment is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise PipelineError(f"no experiment {experiment_name!r} in this MLflow store; "
                            f"experiments there: {names}.")
    eid = experiment.experiment_id
    reaper.reap(client, [eid], "pipeline.report")
    if filter_string and not sweep_id:
        runs = _search(client, eid, filter_string, filter_string)
        runs = [r for r in runs if r.data.tags.get(SWEEP_PARENT) != "true"]
        parent = None
    else:
        sweeps = _sweeps(client, eid)
        matches = [s for s in sweeps if sweep_id in (None, "latest", s.data.tags[SWEEP_ID])]
        if sweep_id not in (None, "latest") and not matches:
            matches = _sweeps_by_id(client, eid, sweep_id)
        if not matches:
            wanted = "no sweeps" if sweep_id in (None, "latest") else f"no sweep {sweep_id!r}"
            raise PipelineError(f"{wanted} in experiment {experiment_name!r}; {_sweep_list(sweeps)}.")
        parent = matches[0]
        query = f"tags.{PARENT_RUN} = '{parent.info.run_id}'"
        if filter_string:
            query += f" and {filter_string}"
        runs = _search(client, eid, query, filter_string)
        runs += [client.get_run(run_id) for key, run_id in parent.data.tags.items()
                 if key.startswith(REUSED)]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    if not finished:
        where = f"sweep {parent.data.tags[SWEEP_ID]}" if parent else f"filter {filter_string!r}"
        statuses = ", ".join(sorted({r.info.status for r in runs})) or "no runs at all"
        raise PipelineError(f"{where} has no FINISHED runs to report on ({statuses}); "
                            f"{_sweep_list(_sweeps(client, eid))}.")
    return _latest_per_config_hash(finished), parent


def _sweeps_by_id(client, experiment_id: str, sweep_id: str) -> list:
    """Older sweeps than the 20 listed, looked up by their exact id."""
    return client.search_runs([experiment_id], f"tags.`{SWEEP_ID}` = '{sweep_id}' and "
                              f"tags.`{SWEEP_PARENT}` = 'true'")


def _latest_per_config_hash(runs: list) -> list:
    """One run per identical config (a resumed sweep may hold re-runs): the newest."""
    latest: dict[str, object] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):
        latest[run.data.tags.get(CONFIG_HASH, run.info.run_id)] = run
    return list(latest.values())


def per_query_scores(client, run) -> dict | None:
    """The run's per-query test scores ({"test_set": fingerprint, "queries": {id: {metric: value}}}),
    or None for a run logged before the pipeline saved them."""
    folder = PER_QUERY_ARTIFACT.rpartition("/")[0]
    if PER_QUERY_ARTIFACT not in {a.path for a in client.list_artifacts(run.info.run_id, folder)}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(client.download_artifacts(run.info.run_id, PER_QUERY_ARTIFACT, tmp)).read_text())


def dev_curve(client, run_id: str, unit: str) -> list[tuple[float, float]]:
    """[(compute spent, dev nDCG@10)] of a run at each dev evaluation, in step order: the two
    curves the train stage logs at the same steps (spent/<unit> and dev/ndcg_at_10)."""
    spent = {point.step: point.value for point in client.get_metric_history(run_id, f"spent/{unit}")}
    return [(spent[point.step], point.value)
            for point in sorted(client.get_metric_history(run_id, "dev/ndcg_at_10"), key=lambda p: p.step)
            if point.step in spent]


def log_report(client, parent, files: list[Path], tags: dict[str, str], metrics: dict[str, float]) -> None:
    """The report's files, under report/ on the sweep's parent run, its tags (the recommendation,
    the description) and its metrics (each row's figures, in batches of MLflow's 1,000 at most)."""
    from mlflow.entities import Metric

    for file in files:
        client.log_artifact(parent.info.run_id, str(file), "report")
    for key, value in tags.items():
        client.set_tag(parent.info.run_id, key, value)
    now = int(time.time() * 1000)
    entries = [Metric(key, value, now, 0) for key, value in metrics.items()]
    for start in range(0, len(entries), 1000):
        client.log_batch(parent.info.run_id, metrics=entries[start:start + 1000])
