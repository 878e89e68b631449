"""The report's pictures. pareto.png: test nDCG@10 against what each row cost (its training time,
or under a budget the compute it spent), with the Pareto front; error bars are the 95 % bootstrap
intervals of nDCG@10 and the seeds' spread of the cost. curves.png (runs under a budget): dev
nDCG@10 against the compute spent so far, one line per run, so quality can be read at any cost."""

from __future__ import annotations

from pathlib import Path

from pipeline.report.budgets import BUDGET, NEGATIVES, SPENT, UNIT, setup
from pipeline.report.significance import Comparison
from pipeline.report.table import pareto_front


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(rows: list[dict], comparison: Comparison, path: Path, title: str) -> None:
    """nDCG@10 against each row's cost, each point labelled by k (and its negatives under a
    budget), the Pareto front and the recommended row drawn."""
    plt = _pyplot()
    budgets = any(row[BUDGET] is not None for row in rows)
    cost = SPENT if budgets else "train time (s)"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        (x, xerr), (y, _) = row[cost], row["nDCG@10"]
        interval = row["nDCG@10 CI"]
        # max(0, ...): the mean logged to MLflow and the interval's may differ in the last bit.
        yerr = [[max(0.0, y - interval.low)], [max(0.0, interval.high - y)]] if interval else None
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color="0.55", capsize=3)
        name = f"k={row['k']} {row[NEGATIVES]}" if budgets else f"k={row['k']}"
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    front = pareto_front(rows, cost)
    ax.plot([r[cost][0] for r in front], [r["nDCG@10"][0] for r in front], "o-",
            color="tab:red", drawstyle="steps-post", zorder=3, label="Pareto front")
    chosen = comparison.recommended
    if chosen and not budgets:
        ax.plot(chosen[cost][0], chosen["nDCG@10"][0], "*", color="tab:green", markersize=16,
                zorder=4, label=f"recommended: k={chosen['k']}")
    ax.set_xscale("log")
    unit = next((row[UNIT] for row in rows if row[BUDGET] is not None), "")
    ax.set_xlabel(f"compute spent ({unit}, log scale)" if budgets else "training time (s, log scale)")
    ax.set_ylabel("test nDCG@10 (bars: 95 % CI)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curves(rows: list[dict], history: dict[str, list[tuple[float, float]]], path: Path, title: str) -> bool:
    """Dev nDCG@10 against the compute spent so far, a line per run coloured by its row; `history`
    is run id -> [(spent, dev nDCG@10)] in step order. False (nothing drawn) without any point."""
    drawn = [row for row in rows if any(history.get(run) for run in row["runs"].split())]
    if not drawn:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.get_cmap("tab10")
    for number, row in enumerate(drawn):
        for seed, run in enumerate(row["runs"].split()):
            points = history.get(run) or []
            name = f"{setup(row)}, {row[BUDGET]:,.6g} {row[UNIT]}" if row[BUDGET] is not None else setup(row)
            ax.plot([x for x, _ in points], [y for _, y in points], "o-", markersize=3, color=colours(number % 10),
                    alpha=0.8, label=name if seed == 0 else None)
    unit = next((row[UNIT] for row in drawn if row[UNIT]), "")
    ax.set_xlabel(f"compute spent so far ({unit})")
    ax.set_ylabel("dev nDCG@10")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
