"""The report's picture: nDCG@10 against training time, with the Pareto front; error bars are
the 95 % bootstrap intervals of nDCG@10 and the seeds' spread of training time."""

from __future__ import annotations

from pathlib import Path

from pipeline.report.significance import Comparison
from pipeline.report.table import pareto_front


def plot(rows: list[dict], comparison: Comparison, path: Path, title: str) -> None:
    """nDCG@10 against training time, each point labelled by k, the Pareto front and the
    recommended row drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        (x, xerr), (y, _) = row["train time (s)"], row["nDCG@10"]
        interval = row["nDCG@10 CI"]
        # max(0, ...): the mean logged to MLflow and the interval's may differ in the last bit.
        yerr = [[max(0.0, y - interval.low)], [max(0.0, interval.high - y)]] if interval else None
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color="0.55", capsize=3)
        ax.annotate(f"k={row['k']}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    front = pareto_front(rows)
    ax.plot([r["train time (s)"][0] for r in front], [r["nDCG@10"][0] for r in front], "o-",
            color="tab:red", drawstyle="steps-post", zorder=3, label="Pareto front")
    chosen = comparison.recommended
    if chosen:
        ax.plot(chosen["train time (s)"][0], chosen["nDCG@10"][0], "*", color="tab:green", markersize=16,
                zorder=4, label=f"recommended: k={chosen['k']}")
    ax.set_xscale("log")
    ax.set_xlabel("training time (s, log scale)")
    ax.set_ylabel("test nDCG@10 (bars: 95 % CI)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


