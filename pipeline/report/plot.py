"""The report's picture: nDCG@10 against training time, with the Pareto front."""

from __future__ import annotations

from pathlib import Path

from pipeline.report.table import pareto_front


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


