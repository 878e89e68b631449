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
import sys
from pathlib import Path

from pipeline.config.preflight import check_tracking
from pipeline.errors import reported
from pipeline.report.plot import plot
from pipeline.report.table import summarize, to_csv, to_markdown
from pipeline.tracking import queries, store
from pipeline.tracking.names import SWEEP_ID


def _defaults() -> tuple[str, str, Path]:
    """Tracking URI, experiment name and outputs dir, as the pipeline's own config resolves them."""
    from hydra import compose, initialize

    import pipeline.hydra_ext.resolvers  # noqa: F401  registers the ${cwd:} resolver that paths use

    with initialize(config_path="../../conf", version_base="1.3"):
        cfg = compose("config")
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

    with reported():
        uri, experiment, outputs = _defaults()
        uri = args.tracking_uri or uri
        check_tracking(uri)
        client = store.client(uri)
        runs, parent = queries.select_runs(client, uri, args.experiment or experiment, args.sweep_id,
                                           args.filter)
    name = parent.data.tags[SWEEP_ID] if parent else "filtered"
    rows, computed = summarize(runs)
    out = args.out or outputs / "reports" / name
    out.mkdir(parents=True, exist_ok=True)
    title = f"sweep {name}" if parent else f"runs matching {args.filter}"
    markdown = to_markdown(rows, computed, title)
    (out / "report.md").write_text(markdown)
    to_csv(rows, out / "report.csv")
    plot(rows, out / "pareto.png", f"nDCG@10 vs training time, {title}")
    if parent:
        queries.log_report(client, parent, [out / file for file in ("report.md", "report.csv", "pareto.png")])
    print(markdown)
    print(f"saved {out}/report.md, report.csv, pareto.png"
          + (f"; logged to parent run {parent.info.run_id} under report/" if parent else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
