"""Speed next to quality for a sweep: a table (CSV, Markdown) and a Pareto plot.

    python -m pipeline.report                  # the latest sweep
    python -m pipeline.report SWEEP_ID         # one sweep (its id is the `sweep/id` tag)
    python -m pipeline.report --filter "params.\\`model.kind\\` = 'static'"   # any runs

Runs are read through MLflow's API, with their per-query test scores (the
`test/per_query.json` artifact). Runs that differ only in `seed` are one config:
the table shows their mean ± standard deviation, a bootstrap 95 % interval over
test queries and seeds, and paired bootstrap tests against the reference config
(smallest k) and the best one; the recommendation is the cheapest config by
training time not significantly below the best (pipeline/report/significance.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.errors import reported
from pipeline.names import SWEEP_ID
from pipeline.preflight import check_tracking
from pipeline.report import answer
from pipeline.report.budgets import at_equal_cost
from pipeline.report.budgets import lines as budget_lines
from pipeline.report.plot import curves, plot
from pipeline.report.significance import recommendation
from pipeline.report.table import pairs_to_csv, summarize, to_csv, to_markdown
from pipeline.tracking import queries, quiet_mlflow, store

FILES = ("report.md", "report.csv", "pairs.csv", "pareto.png")


def _defaults() -> tuple[str, str, Path]:
    """Tracking URI, experiment name and outputs dir, as the pipeline's own config resolves them."""
    from pipeline.hydra_ext.compose import compose

    cfg = compose()
    return cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name, Path(cfg.paths.outputs_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_id", nargs="?", help="a sweep's id (default: the latest sweep)")
    parser.add_argument("--experiment", help="MLflow experiment (default: the pipeline's)")
    parser.add_argument("--filter", help="MLflow search filter on runs, e.g. \"params.k = '8'\"")
    parser.add_argument("--tracking-uri", help="MLflow store (default: the pipeline's)")
    parser.add_argument("--out", type=Path, help="where to save (default: outputs/reports/<name>)")
    args = parser.parse_args(argv)
    quiet_mlflow()
    with reported():
        uri, experiment, outputs = _defaults()
        uri = args.tracking_uri or uri
        check_tracking(uri)
        client = store.client(uri)
        runs, parent = queries.select_runs(client, uri, args.experiment or experiment, args.sweep_id,
                                           args.filter)
    name = parent.data.tags[SWEEP_ID] if parent else "filtered"
    rows, comparison, computed = summarize(runs, {run.info.run_id: queries.per_query_scores(client, run)
                                                  for run in runs})
    line = recommendation(comparison, rows)
    out = args.out or outputs / "reports" / name
    out.mkdir(parents=True, exist_ok=True)
    title = f"sweep {name}" if parent else f"runs matching {args.filter}"
    markdown = to_markdown(rows, comparison, line, computed, title)
    (out / "report.md").write_text(markdown)
    to_csv(rows, comparison, out / "report.csv")
    pairs_to_csv(comparison, out / "pairs.csv")
    answers = at_equal_cost(rows)
    plot(rows, comparison, out / "pareto.png",
         f"nDCG@10 vs {'compute spent' if answers else 'training time'}, {title}")
    files = list(FILES)
    if answers and curves(rows, {run: queries.dev_curve(client, run, answers[0].unit)
                                 for row in rows for run in row["runs"].split()},
                          out / "curves.png", f"dev nDCG@10 vs compute spent, {title}"):
        files.append("curves.png")
    if parent:
        chosen = comparison.recommended
        tags = {"report/recommendation": line, "report/recommended_k": str(chosen["k"]) if chosen else "n/a"}
        answer_lines = budget_lines(answers)
        tags |= {f"report/at_budget/{answer.budget:g}": text for answer, text in zip(answers, answer_lines)}
        if answers:
            tags["report/smallest_budget"] = answer_lines[-1]
        tags |= answer.tags(line, comparison, markdown, rows)
        queries.log_report(client, parent, [out / file for file in files], tags, answer.metrics(rows))
    print(markdown)
    print(f"saved {out}/{', '.join(files)}"
          + (f"; logged to parent run {parent.info.run_id} under report/" if parent else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
