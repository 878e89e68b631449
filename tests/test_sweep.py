"""Real multiruns: parent and child MLflow runs, launchers, resume, interrupts, the report."""

import csv
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import warm
from helpers import FAST, ROOT, write_jsonl
from pipeline.hydra_ext.launch import cpu_count, job_threads, parallel_jobs
from pipeline.report.stats import bootstrap_mean
from pipeline.tracking.sweeps import config_hash

# Other processes: the command line, launchers, benchmarks (make test runs them; make check does not).
pytestmark = pytest.mark.slow


def split_parent(runs):
    """(the one parent run, its children) of a store holding one sweep."""
    (parent,) = [r for r in runs if r.data.tags.get("sweep/parent") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


def sweeps(cli):
    """Parent runs of the store, newest first, each with its children."""
    runs = cli.all_runs()
    parents = [r for r in runs if r.data.tags.get("sweep/parent") == "true"]
    return [(p, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id])
            for p in parents]


def test_sweep_runs_each_job_once_as_a_child_of_one_parent_and_reports(cli, tmp_path):
    result = cli.multirun("k=0,1,2,2", "report=true", "mlflow.log_model=null")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 duplicate sweep job(s) dropped" in result.stdout + result.stderr
    parent, children = split_parent(cli.all_runs())
    assert parent.info.status == "FINISHED"
    assert len(children) == 3 and len(cli.all_runs()) == 4
    sweep_id = parent.data.tags["sweep/id"]
    assert {c.data.tags["sweep/id"] for c in children} == {sweep_id}
    assert sorted(c.data.tags["sweep/job_num"] for c in children) == ["0", "1", "2"]
    assert sorted(c.data.params["k"] for c in children) == ["0", "1", "2"]
    assert all(c.info.status == "FINISHED" for c in children)
    # By default (mlflow.log_model=null) sweep jobs keep their model in their run dir only.
    assert all("model/uri" not in c.data.tags and not c.outputs.model_outputs for c in children)

    # report=true: the sweep ran the report when its last job had finished
    out = cli.root / "outputs" / "reports" / sweep_id
    rows = read_csv(out / "report.csv")
    assert [row["k"] for row in rows] == ["0", "1", "2"]
    assert [row["texts/step"] for row in rows] == ["32", "48", "64"]  # batch 16 x (2 + k)
    by_k = {c.data.params["k"]: c for c in children}
    for row in rows:
        metrics = by_k[row["k"]].data.metrics
        assert float(row["nDCG@10"]) == pytest.approx(metrics["test/ndcg_at_10"])
        assert float(row["train time (s)"]) == pytest.approx(metrics["time/train_s"])
        assert row["seeds"] == "1" and row["test queries"] == str(int(metrics["test/queries"]))
        # the interval is the bootstrap of the run's own per-query scores, read back from MLflow
        scores = per_query(cli, by_k[row["k"]])["queries"]
        for column, metric in (("nDCG@10", "ndcg_at_10"), ("MRR@10", "mrr_at_10")):
            interval = bootstrap_mean([query[metric] for query in scores.values()])
            assert (float(row[f"{column} CI low"]), float(row[f"{column} CI high"])) == \
                pytest.approx((interval.low, interval.high))
            assert interval.low <= float(row[column]) <= interval.high
    assert_compared(rows)
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "| k | loss | texts/step |" in result.stdout and "★" in result.stdout
    (recommended,) = [row for row in rows if row["recommended"] == "yes"]
    assert f"Recommendation: k={recommended['k']} " in result.stdout
    import mlflow

    client = mlflow.MlflowClient(cli.tracking_uri)
    logged = client.list_artifacts(parent.info.run_id, "report")
    assert {Path(a.path).name for a in logged} == {"report.md", "report.csv", "pairs.csv", "pareto.png"}
    tags = client.get_run(parent.info.run_id).data.tags
    assert tags["report/recommended_k"] == recommended["k"]
    assert tags["report/recommendation"].startswith(f"Recommendation: k={recommended['k']} ")
    # The UI shows the answer on the parent: its name, the table as its description, each row's figures.
    assert tags["mlflow.runName"] == f"sweep k=0,1,2,2 {sweep_id[-4:]}"
    assert sorted(c.data.tags["mlflow.runName"] for c in children) == ["k0 mnrl s42", "k1 mnrl live s42",
                                                                       "k2 mnrl live s42"]
    assert all(" Test nDCG@10 " in c.data.tags["mlflow.note.content"] for c in children)
    assert tags["answer/recommended"] == tags["report/recommendation"]
    assert tags["answer/recommended_row"] == f"k{recommended['k']}_mnrl"
    assert tags["mlflow.note.content"] == (out / "report.md").read_text()
    answer = client.get_run(parent.info.run_id).data.metrics
    for row in rows:
        assert answer[f"answer/k{row['k']}_mnrl/ndcg_at_10_mean"] == pytest.approx(float(row["nDCG@10"]))
        assert answer[f"answer/k{row['k']}_mnrl/ndcg_at_10_ci_low"] == pytest.approx(float(row["nDCG@10 CI low"]))
        assert answer[f"answer/k{row['k']}_mnrl/ndcg_at_10_ci_high"] == pytest.approx(float(row["nDCG@10 CI high"]))
    pairs = read_csv(out / "pairs.csv")
    assert [(p["a"], p["b"], p["metric"]) for p in pairs] == [
        (a, b, metric) for a, b in (("k=0 mnrl", "k=1 mnrl"), ("k=0 mnrl", "k=2 mnrl"), ("k=1 mnrl", "k=2 mnrl"))
        for metric in ("nDCG@10", "MRR@10")]

    # A run logged before per-query scores were saved: its row reports n/a, the others as before.
    older = by_k["1"]
    Path(older.info.artifact_uri.removeprefix("file://"), "test", "per_query.json").unlink()
    again = warm.run([sys.executable, "-m", "pipeline.report", sweep_id, "--out", str(tmp_path / "r")],
                           cwd=ROOT, env=cli.env(), timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    rows = read_csv(tmp_path / "r" / "report.csv")
    assert (rows[1]["nDCG@10 CI low"], rows[1]["significant at 95 %"]) == ("", "n/a (no per-query scores)")
    assert rows[0]["nDCG@10 CI low"] != "" and rows[2]["significant at 95 %"] != "n/a (no per-query scores)"
    assert "| n/a |" in again.stdout and "Not considered: k=1 mnrl, n/a (no per-query scores)." in again.stdout

    unknown = warm.run([sys.executable, "-m", "pipeline.report", "no-such-sweep"], cwd=ROOT,
                             env=cli.env(), timeout=300)
    assert unknown.returncode == 2
    assert "no sweep 'no-such-sweep'" in unknown.stderr and sweep_id in unknown.stderr


def test_a_budget_sweep_is_answered_at_equal_cost(cli):
    """Two budgets x k = 0, 4 with bank negatives re-mined online: every job spends its budget
    (within one step), and the report answers per budget, names the smallest sufficient budget,
    and draws dev nDCG@10 against compute spent."""
    result = cli.multirun("train.max_steps=-1", "train.budget=640,1280", "k=0,4", "loss.negatives=bank",
                          "loss.bank_mining=online", "eval=fraction", "eval.every=0.5",
                          "train.learning_rate=0.05", "report=true")
    assert result.returncode == 0, result.stderr[-3000:]
    parent, children = split_parent(cli.all_runs())
    assert len(children) == 4
    for child in children:
        metrics, budget = child.data.metrics, float(child.data.params["train.budget"])
        assert budget - metrics["budget/per_step"] < metrics["budget/spent"] <= budget
    assert "### At equal cost" in result.stdout and "**For budget 640 texts: " in result.stdout
    assert "**Smallest budget whose quality is not significantly below the best: " in result.stdout
    import mlflow

    client = mlflow.MlflowClient(cli.tracking_uri)
    logged = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"pareto.png", "curves.png"} <= logged
    tags = client.get_run(parent.info.run_id).data.tags
    assert tags["report/at_budget/640"].startswith("For budget 640 texts: k=")
    assert tags["report/smallest_budget"].startswith("Smallest budget whose quality")


def test_a_sweep_over_languages_reports_each_language(cli):
    """data=translations with two languages, k = 0, 2: every job logs per-language test metrics and
    datasets, and the report's per-source table holds both languages."""
    result = cli.multirun("data=translations", "data.languages=[de,fr]", "k=0,2", "report=true")
    assert result.returncode == 0, result.stderr[-3000:]
    _, children = split_parent(cli.all_runs())
    assert len(children) == 2
    for child in children:
        metrics = child.data.metrics
        assert {"test/de/ndcg_at_10", "test/fr/ndcg_at_10", "split/de/train_rows"} <= set(metrics)
        assert metrics["test/ndcg_at_10"] == pytest.approx(
            (metrics["test/de/ndcg_at_10"] + metrics["test/fr/ndcg_at_10"]) / 2)
        names = {d.dataset.name for d in child.inputs.dataset_inputs}
        assert {"de/train", "de/test", "fr/train", "fr/test"} <= names
    assert "### Per source" in result.stdout and "| de nDCG@10 |" in result.stdout
    assert "macro average of 2 sources" in result.stdout


@pytest.mark.fresh_store
def test_four_joblib_jobs_on_a_fresh_store_lose_no_metric_and_report_seed_spread(cli, tmp_path):
    assert not (cli.root / "mlflow.db").exists()
    result = cli.multirun("hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "k=0,1", "seed=1,2")
    assert result.returncode == 0, result.stderr[-3000:]
    if cpu_count() < 4:
        assert f"n_jobs=4 is more than the {cpu_count()} cores here: clamped" in result.stdout + result.stderr
    parent, children = split_parent(cli.all_runs())
    assert parent.data.tags["sweep/launcher"] == "joblib" and len(children) == 4
    for child in children:
        assert child.info.status == "FINISHED"
        logged = cli.summary(child)["metrics"]
        assert set(logged) <= set(child.data.metrics), set(logged) - set(child.data.metrics)
        assert all(child.data.metrics[name] == pytest.approx(value) for name, value in logged.items())
        assert child.data.tags["host/torch_threads"] == str(cpu_count() // min(4, cpu_count()))

    report = warm.run([sys.executable, "-m", "pipeline.report", "--out", str(tmp_path / "r")],
                            cwd=ROOT, env=cli.env(), timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    rows = read_csv(tmp_path / "r" / "report.csv")
    assert [(row["k"], row["seeds"]) for row in rows] == [("0", "2"), ("1", "2")]
    assert all(row["nDCG@10 std"] != "" for row in rows)
    # split.seed fixes the split: both seeds were scored on the same test queries, so they pool
    assert len({per_query(cli, child)["test_set"] for child in children}) == 1
    assert all(row["nDCG@10 CI low"] != "" for row in rows)
    assert_compared(rows)
    assert " ± " in report.stdout


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def per_query(cli, run) -> dict:
    """A run's test/per_query.json artifact, read back through MLflow."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(mlflow.MlflowClient(cli.tracking_uri).download_artifacts(
            run.info.run_id, "test/per_query.json", tmp)).read_text())


def assert_compared(rows: list[dict]) -> None:
    """The report's comparisons agree with their own intervals, and the recommendation follows them."""
    assert rows[0]["significant at 95 %"] == "reference" and rows[0]["Δ CI low"] == ""
    for row in rows[1:]:
        low, high = float(row["Δ CI low"]), float(row["Δ CI high"])
        assert low <= float(row["Δ nDCG@10"]) <= high
        significant = "yes" if low > 0 or high < 0 else "no"
        assert row["significant at 95 %"] == f"{significant} (p={float(row['Δ p']):.3f})"
    (best,) = [row for row in rows if row["vs best"] == "best"]
    assert float(best["nDCG@10"]) == max(float(row["nDCG@10"]) for row in rows)
    assert all(row["vs best"].startswith(("below (p=", "not below (p=")) for row in rows if row is not best)
    eligible = [row for row in rows if row["vs best"] == "best" or row["vs best"].startswith("not below")]
    (recommended,) = [row for row in rows if row["recommended"] == "yes"]
    assert recommended is min(eligible, key=lambda row: float(row["train time (s)"]))


def test_resume_skips_finished_jobs_and_reruns_a_failed_one(cli, tmp_path):
    from pipeline.stages.docstrings import harvest

    rows = harvest([], 4, 40, 400)[:400]
    good = write_jsonl(tmp_path / "good.jsonl", rows)
    flaky = write_jsonl(tmp_path / "flaky.jsonl", [{"anchor": " ", "positive": ""}] * 5)
    sweep = ["data=files", f"data.path={good},{flaky}", "k=1"]

    first = cli.multirun(*sweep)
    assert first.returncode != 0 and "empty after removing" in first.stderr
    (parent, children), = sweeps(cli)
    assert parent.info.status == "FAILED"
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED"]
    finished = next(c for c in children if c.info.status == "FINISHED")

    shutil.copy(good, flaky)  # the cause of the failure is fixed; the config is unchanged
    second = cli.multirun(*sweep)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"already FINISHED as run {finished.info.run_id}" in second.stdout + second.stderr
    (new_parent, new_children), _ = sweeps(cli)
    assert new_parent.info.status == "FINISHED"
    (rerun,) = new_children
    assert rerun.info.status == "FINISHED" and rerun.data.params["data.path"] == str(flaky)
    failed = next(c for c in children if c.info.status == "FAILED")
    assert rerun.data.tags["config_hash"] == failed.data.tags["config_hash"]
    assert new_parent.data.tags["reused/0"] == finished.info.run_id

    third = cli.multirun("data=files", f"data.path={good}", "k=1", "resume=false")
    assert third.returncode == 0, third.stderr[-3000:]
    (latest, (again,)), *_ = sweeps(cli)
    assert again.data.tags["config_hash"] == finished.data.tags["config_hash"]
    assert not any(key.startswith("reused/") for key in latest.data.tags)


OPTUNA = ["hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1", "hydra.sweeper.sampler.seed=1",
          "hydra.sweeper.direction=[maximize,minimize]", "objectives=[test/ndcg_at_10,time/train_s]",
          "k=choice(0,2)", "loss.negatives=choice(live,frozen)", "train.learning_rate=interval(0.01,0.1)",
          "train.max_steps=2", "data.max_rows=400"]


def test_an_optuna_search_trades_ndcg_against_cost_resumes_and_reports(cli):
    """hydra/sweeper=optuna with two objectives: each trial returns (test nDCG@10, training seconds)
    of its run, the study's best trials are those runs' figures; the sweep has its parent run as
    with the basic sweeper, and the same search again reuses every finished trial and reports."""
    import yaml

    first = cli.multirun(*OPTUNA)
    assert first.returncode == 0, first.stderr[-3000:]
    parent, children = split_parent(cli.all_runs())
    assert parent.info.status == "FINISHED" and len(children) == 3
    assert parent.data.tags["mlflow.runName"].startswith("sweep k=choice(0,2) loss.negatives=choice(live,frozen)")
    names = {c.data.tags["mlflow.runName"] for c in children}  # the learning rate tells trials apart
    assert len(names) == 3 and all(" learning_rate=" in name for name in names), names
    results = yaml.safe_load(Path(parent.data.tags["sweep/dir"], "optimization_results.yaml").read_text())
    figures = {(c.data.metrics["test/ndcg_at_10"], c.data.metrics["time/train_s"]) for c in children}
    assert results["solutions"] and all(tuple(t["values"]) in figures for t in results["solutions"])

    again = cli.multirun(*OPTUNA, "report=true")
    assert again.returncode == 0, again.stderr[-3000:]
    (latest, rerun), _ = sweeps(cli)
    assert rerun == [] and (again.stdout + again.stderr).count("already FINISHED as run") == 3
    assert sorted(v for k, v in latest.data.tags.items() if k.startswith("reused/")) == \
        sorted(c.info.run_id for c in children)
    assert latest.data.tags["answer/recommended"].startswith("Recommendation: k=")
    assert latest.data.tags["mlflow.note.content"].startswith(f"### sweep {latest.data.tags['sweep/id']}")
    assert sum(key.startswith("answer/") and key.endswith("/ndcg_at_10_mean") for key in latest.data.metrics) == 3


def test_an_optuna_search_is_checked_before_any_trial(cli):
    """An unknown key or a refused end of a range, and directions without their objectives, stop the
    search with one message before the first trial."""
    for overrides, words in ((["train.learnin_rate=interval(0.01,0.1)"], "Did you mean train.learning_rate="),
                             (["k=range(0,80,8)"], "k=72 is not allowed"),
                             (["hydra.sweeper.direction=[maximize,minimize]", "k=choice(0,2)"],
                              "one metric per direction")):
        result = cli.multirun("hydra/sweeper=optuna", *overrides)
        assert result.returncode == 2 and words in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    assert not (cli.root / "mlflow.db").exists() or cli.all_runs() == []


def test_a_resumed_sweep_reruns_a_job_whose_code_changed(cli, tmp_path):
    """Resume compares a hash of the pipeline's sources: edit one and the finished job runs again.
    The first sweep runs from this checkout, the second from a copy of it with one file edited."""
    copy = tmp_path / "checkout"
    for part in ("pipeline", "conf", "hydra_plugins"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    args = [sys.executable, "-m", "pipeline", "-m", *FAST, f"paths.cache_dir={cli.cache}", "k=1"]

    def sweep(checkout: Path) -> subprocess.CompletedProcess:
        result = warm.run(args, cwd=checkout, env=cli.env(), timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    sweep(ROOT)
    (first, (done,)), = sweeps(cli)
    with (copy / "pipeline" / "losses" / "hn_only.py").open("a") as source:
        source.write("\n# an edit: the code is no longer what produced the finished run\n")
    second = sweep(copy)
    assert "already FINISHED" not in second.stdout + second.stderr
    (latest, (rerun,)), _ = sweeps(cli)
    assert rerun.info.run_id != done.info.run_id and rerun.info.status == "FINISHED"
    assert rerun.data.tags["config_hash"] == done.data.tags["config_hash"]
    assert rerun.data.tags["code_hash"] != done.data.tags["code_hash"]
    assert not any(key.startswith("reused/") for key in latest.data.tags)


def test_ctrl_c_during_a_job_leaves_its_run_and_the_sweep_killed(cli, tmp_path):
    # Signalled once the child run exists, then 2 s into the job's stages. (SIGTERM takes the same
    # path: test_faults stops a joblib sweep with it.)
    returncode, log = cli.interrupted_sweep(["k=1", "train.max_steps=2000"], lambda c: any(
        r.data.tags.get("mlflow.parentRunId") for r in c.runs()), signal.SIGINT, 2)
    assert returncode == 130, log[-3000:]
    assert "Traceback" not in log and "interrupted (Ctrl-C or SIGTERM)" in log
    (parent, (child,)), = sweeps(cli)
    assert child.info.status == "KILLED" and "interrupted" in child.data.tags["error"]
    assert parent.info.status == "KILLED"


def test_submitit_local_runs_the_sweep_and_slurm_without_sbatch_says_what_to_use(cli):
    result = cli.multirun("hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=2", "k=0,1")
    assert result.returncode == 0, result.stderr[-3000:]
    parent, children = split_parent(cli.all_runs())
    assert parent.data.tags["sweep/launcher"] == "submitit_local"
    assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED"]
    assert {c.data.tags["host/torch_threads"] for c in children} == {"2"}  # the tests' default is 1
    if shutil.which("sbatch") is None:
        slurm = cli.multirun("hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu", "k=0,1")
        assert slurm.returncode == 2
        assert "needs SLURM" in slurm.stderr and "hydra/launcher=submitit_local" in slurm.stderr
        assert len(cli.all_runs()) == 3  # nothing was started


def test_report_on_an_empty_store_lists_what_exists(cli):
    result = warm.run([sys.executable, "-m", "pipeline.report"], cwd=ROOT, env=cli.env(),
                            timeout=300)
    assert result.returncode == 2
    assert "no experiment 'hnpipe'" in result.stderr and "experiments there: Default" in result.stderr


def test_joblib_jobs_share_the_cores_and_n_jobs_is_clamped():
    joblib = OmegaConf.create({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
                               "n_jobs": 4})
    assert parallel_jobs(-1, 8) == 8 and parallel_jobs(-2, 8) == 7 and parallel_jobs(16, 2) == 2
    assert job_threads(joblib) == max(1, cpu_count() // min(4, cpu_count()))
    basic = OmegaConf.create({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"})
    assert job_threads(basic) is None


def test_config_hash_ignores_where_outputs_go_but_not_what_runs():
    cfg = OmegaConf.create({"k": 2, "seed": 1, "resume": True, "train": {"batch_size": 16},
                            "paths": {"run_dir": "/a"}, "mlflow": {"experiment_name": "x"}})
    moved = OmegaConf.merge(cfg, {"paths": {"run_dir": "/b"}, "mlflow": {"experiment_name": "y"},
                                  "resume": False})
    assert config_hash(cfg) == config_hash(moved)
    for change in ({"k": 4}, {"seed": 2}, {"train": {"batch_size": 32}}):
        assert config_hash(OmegaConf.merge(cfg, change)) != config_hash(cfg)
