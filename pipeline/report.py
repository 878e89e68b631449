"""Speed next to quality for a sweep: a table (CSV, Markdown) and a Pareto plot.

    python -m pipeline.report                  # the latest sweep
    python -m pipeline.report SWEEP_ID         # one sweep (its id is the `sweep/id` tag)
    python -m pipeline.report --filter "params.\\`model.kind\\` = 'static'"   # any runs

Runs are read through MLflow's API. Runs that differ only in `seed` are one
config: the table shows their mean ± standard deviation, and whether a
config's nDCG@10 differs from the reference config's (smallest k) by more than
their spreads added up, i.e. by more than seed noise.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.sweep import HASH_TAG, PARENT_TAG

# (column, MLflow metric): per-config means (± spread with several seeds).
METRICS = [("s/step", "train/s_per_step"), ("train time (s)", "time/train_s"),
           ("eval fraction", "time/eval_fraction"), ("nDCG@10", "test/ndcg_at_10"),
           ("MRR@10", "test/mrr_at_10"), ("gain nDCG@10", "gain/ndcg_at_10")]
TEXTS_PER_STEP = "cost/texts_per_step"
# Params that don't make two runs different configs.
_NOT_CONFIG = ("seed", "resume", "preset")
_NOT_CONFIG_PREFIXES = ("paths.", "mlflow.")


def _defaults() -> tuple[str, str, Path]:
    """Tracking URI, experiment name and outputs dir, as the pipeline's own config resolves them."""
    from hydra import compose, initialize

    import pipeline.__main__  # noqa: F401  registers the ${cwd:} resolver that paths use

    with initialize(config_path="../conf", version_base="1.3"):
        cfg = compose("config")
        return cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name, Path(cfg.paths.outputs_dir)


def _sweeps(client, experiment_id: str) -> list:
    return client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = 'true'",
                              order_by=["attributes.start_time DESC"], max_results=20)


def _sweep_list(sweeps) -> str:
    if not sweeps:
        return "there are no sweeps yet (run one: python -m pipeline -m +experiment=sweep_k_quick)"
    return "sweeps there, newest first: " + "; ".join(
        f"{s.data.tags['sweep/id']} ({s.info.status}, {s.data.tags.get('sweep/overrides', '')})"
        for s in sweeps)


def select_runs(client, experiment_name: str, sweep_id: str | None, filter_string: str | None):
    """FINISHED runs to report on, and the sweep's parent run (None with --filter)."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise PipelineError(f"no experiment {experiment_name!r} in this MLflow store; "
                            f"experiments there: {names}.")
    eid = experiment.experiment_id
    if filter_string and not sweep_id:
        runs = client.search_runs([eid], filter_string, max_results=5000)
        runs = [r for r in runs if r.data.tags.get(PARENT_TAG) != "true"]
        parent = None
    else:
        sweeps = _sweeps(client, eid)
        matches = [s for s in sweeps if sweep_id in (None, "latest", s.data.tags["sweep/id"])]
        if sweep_id not in (None, "latest") and not matches:
            matches = _sweeps_by_id(client, eid, sweep_id)
        if not matches:
            wanted = "no sweeps" if sweep_id in (None, "latest") else f"no sweep {sweep_id!r}"
            raise PipelineError(f"{wanted} in experiment {experiment_name!r}; {_sweep_list(sweeps)}.")
        parent = matches[0]
        query = f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        if filter_string:
            query += f" and {filter_string}"
        runs = client.search_runs([eid], query, max_results=5000)
        runs += [client.get_run(run_id) for key, run_id in parent.data.tags.items()
                 if key.startswith("reused/")]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    if not finished:
        where = f"sweep {parent.data.tags['sweep/id']}" if parent else f"filter {filter_string!r}"
        statuses = ", ".join(sorted({r.info.status for r in runs})) or "no runs at all"
        raise PipelineError(f"{where} has no FINISHED runs to report on ({statuses}); "
                            f"{_sweep_list(_sweeps(client, eid))}.")
    return _latest_per_config_hash(finished), parent


def _sweeps_by_id(client, experiment_id: str, sweep_id: str) -> list:
    """Older sweeps than the 20 listed, looked up by their exact id."""
    return client.search_runs([experiment_id], f"tags.`sweep/id` = '{sweep_id}' and "
                              f"tags.`{PARENT_TAG}` = 'true'")


def _latest_per_config_hash(runs: list) -> list:
    """One run per identical config (a resumed sweep may hold re-runs): the newest."""
    latest: dict[str, object] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):
        latest[run.data.tags.get(HASH_TAG, run.info.run_id)] = run
    return list(latest.values())


def _config_key(params: dict[str, str]) -> tuple:
    return tuple(sorted((key, value) for key, value in params.items()
                        if key not in _NOT_CONFIG and not key.startswith(_NOT_CONFIG_PREFIXES)))


def _spread(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarize(runs: list) -> tuple[list[dict], bool]:
    """One row per config, sorted by k; and whether texts/step had to be computed."""
    groups: dict[tuple, list] = {}
    for run in runs:
        groups.setdefault(_config_key(run.data.params), []).append(run)
    keys = [dict(key) for key in groups]
    names = sorted(set().union(*keys) - {"k", "loss.name"})
    varying = [name for name in names if len({key.get(name) for key in keys}) > 1]
    rows, computed = [], False
    for key, group in groups.items():
        params = dict(key)
        k, batch = int(params["k"]), int(params["train.batch_size"])
        texts = [r.data.metrics.get(TEXTS_PER_STEP) for r in group]
        if None in texts:
            texts, computed = [batch * (2 + k)], True
        row = {"k": k, "loss": params["loss.name"], "config": " ".join(f"{p}={params.get(p)}" for p in varying),
               "texts/step": round(statistics.fmean(texts)), "seeds": len(group),
               "runs": " ".join(r.info.run_id for r in group)}
        for column, metric in METRICS:
            row[column] = _spread([r.data.metrics.get(metric, float("nan")) for r in group])
        rows.append(row)
    rows.sort(key=lambda r: (r["config"], r["loss"], r["k"]))
    _mark_differences(rows)
    return rows, computed


def _mark_differences(rows: list[dict]) -> None:
    """Δ nDCG@10 against the reference row (smallest k), and whether it beats the seed spread."""
    ref = min(rows, key=lambda r: (r["config"], r["k"]))
    ref_mean, ref_std = ref["nDCG@10"]
    for row in rows:
        mean, std = row["nDCG@10"]
        row["Δ nDCG@10"] = mean - ref_mean
        if row is ref:
            row["beyond spread"] = "reference"
        elif std is None or ref_std is None:
            row["beyond spread"] = "n/a (1 seed)"
        else:
            row["beyond spread"] = "yes" if abs(mean - ref_mean) > std + ref_std else "no"
    for row in rows:
        row["reference"] = f"k={ref['k']}"


def pareto_front(rows: list[dict]) -> list[dict]:
    """Rows no other row beats on both training time (lower) and nDCG@10 (higher)."""
    front, best = [], float("-inf")
    for row in sorted(rows, key=lambda r: (r["train time (s)"][0], -r["nDCG@10"][0])):
        if row["nDCG@10"][0] > best:
            front.append(row)
            best = row["nDCG@10"][0]
    return front


def _fmt(value, digits: int) -> str:
    if isinstance(value, tuple):
        mean, std = value
        return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")
    return f"{value:+.{digits}f}" if isinstance(value, float) else str(value)


_DIGITS = {"s/step": 3, "train time (s)": 1, "eval fraction": 3, "nDCG@10": 4, "MRR@10": 4,
           "gain nDCG@10": 4, "Δ nDCG@10": 4}


def to_markdown(rows: list[dict], computed_texts: bool, title: str) -> str:
    columns = ["k", "loss"] + (["config"] if rows[0]["config"] else []) + ["texts/step"] + \
        [c for c, _ in METRICS] + ["Δ nDCG@10", "beyond spread", "seeds"]
    front = {id(r) for r in pareto_front(rows)}
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " | Pareto |",
             "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        cells = [_fmt(row[c], _DIGITS.get(c, 0)) for c in columns]
        lines.append("| " + " | ".join(cells) + f" | {'★' if id(row) in front else ''} |")
    lines += ["", f"Mean ± standard deviation over seeds. Δ nDCG@10 is against {rows[0]['reference']}; "
              "'beyond spread' = |Δ| exceeds the two configs' standard deviations added up. "
              "★ = on the Pareto front of training time vs nDCG@10."]
    if computed_texts:
        lines.append("texts/step = train.batch_size × (2 + k), computed (the runs log no "
                     f"`{TEXTS_PER_STEP}`).")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict], path: Path) -> None:
    spread = [c for c, _ in METRICS]
    header = ["k", "loss", "config", "texts/step"] + [h for c in spread for h in (c, f"{c} std")] + \
        ["Δ nDCG@10", "beyond spread", "reference", "seeds", "runs"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            values = [row["k"], row["loss"], row["config"], row["texts/step"]]
            values += [v for c in spread for v in (row[c][0], "" if row[c][1] is None else row[c][1])]
            writer.writerow(values + [row["Δ nDCG@10"], row["beyond spread"], row["reference"],
                                      row["seeds"], row["runs"]])


def plot(rows: list[dict], path: Path, title: str) -> None:
    """nDCG@10 against training time, each point labelled by k, the Pareto front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        (x, xerr), (y, yerr) = row["train time (s)"], row["nDCG@10"]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color="0.55", capsize=3)
        ax.annotate(f"k={row['k']}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    front = pareto_front(rows)
    ax.plot([r["train time (s)"][0] for r in front], [r["nDCG@10"][0] for r in front], "o-",
            color="tab:red", drawstyle="steps-post", zorder=3, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("training time (s, log scale)")
    ax.set_ylabel("test nDCG@10")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_id", nargs="?", help="a sweep's id (default: the latest sweep)")
    parser.add_argument("--experiment", help="MLflow experiment (default: the pipeline's)")
    parser.add_argument("--filter", help="MLflow search filter on runs, e.g. \"params.k = '8'\"")
    parser.add_argument("--tracking-uri", help="MLflow store (default: the pipeline's)")
    parser.add_argument("--out", type=Path, help="where to save (default: outputs/reports/<name>)")
    args = parser.parse_args(argv)
    from mlflow import MlflowClient

    uri, experiment, outputs = _defaults()
    client = MlflowClient(args.tracking_uri or uri)
    try:
        runs, parent = select_runs(client, args.experiment or experiment, args.sweep_id, args.filter)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = parent.data.tags["sweep/id"] if parent else "filtered"
    rows, computed = summarize(runs)
    out = args.out or outputs / "reports" / name
    out.mkdir(parents=True, exist_ok=True)
    title = f"sweep {name}" if parent else f"runs matching {args.filter}"
    markdown = to_markdown(rows, computed, title)
    (out / "report.md").write_text(markdown)
    to_csv(rows, out / "report.csv")
    plot(rows, out / "pareto.png", f"nDCG@10 vs training time, {title}")
    if parent:
        for file in ("report.md", "report.csv", "pareto.png"):
            client.log_artifact(parent.info.run_id, str(out / file), "report")
    print(markdown)
    print(f"saved {out}/report.md, report.csv, pareto.png"
          + (f"; logged to parent run {parent.info.run_id} under report/" if parent else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
