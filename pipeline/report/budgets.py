"""The answer at equal cost: for each compute budget, which setup gives the best model, and the
smallest budget that is as good as any.

Rows whose runs trained under a budget (train.budget) are grouped by it: every row of a group
spent the same compute, so their qualities compare without a cost column. Within a group the
best row (highest mean nDCG@10) is the recommendation for that budget, and each other row is
held to it by the paired bootstrap of pipeline.report.significance: rows not significantly
below it are as good at that price. Across groups, the smallest budget whose best row is not
significantly below the overall best row is where more compute stops buying quality.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.report.significance import COMPARED, Difference, label, paired

# Row fields the table adds from each run's params and metrics (pipeline.report.table.summarize).
BUDGET, UNIT, NEGATIVES, SPENT = "budget", "unit", "negatives", "spent"


@dataclass
class AtBudget:
    """One budget's rows: the best, and every other row against it (a - best, or None unpaired)."""

    budget: float
    unit: str
    rows: list[dict]
    best: dict
    vs_best: dict[int, Difference | None] = field(default_factory=dict)  # id(row) -> row - best

    def as_good(self) -> list[dict]:
        """The rows not significantly below the best at this budget (the best first)."""
        return [self.best] + [row for row in self.rows if row is not self.best
                              and (d := self.vs_best.get(id(row))) is not None and not d.significant]


def at_equal_cost(rows: list[dict]) -> list[AtBudget]:
    """One AtBudget per budget, smallest first ([] when no row trained under a budget)."""
    groups: dict[tuple[float, str], list[dict]] = {}
    for row in rows:
        if row[BUDGET] is not None:
            groups.setdefault((row[BUDGET], row[UNIT]), []).append(row)
    answers = []
    for (amount, unit), members in sorted(groups.items()):
        best = max(members, key=lambda r: r[COMPARED][0])
        answers.append(AtBudget(amount, unit, members, best,
                                {id(row): paired(row, best) for row in members if row is not best}))
    return answers


def smallest_sufficient(answers: list[AtBudget]) -> tuple[AtBudget, Difference | None] | None:
    """The smallest budget whose best row is not significantly below the best row of any budget
    (with the paired difference to it), or None without budgets."""
    if not answers:
        return None
    overall = max((answer.best for answer in answers), key=lambda r: r[COMPARED][0])
    for answer in answers:
        difference = paired(answer.best, overall)
        if answer.best is overall or (difference is not None and not difference.significant):
            return answer, difference
    return answers[-1], None


def setup(row: dict) -> str:
    """What a row trains: k, the loss and where its negatives come from."""
    return f"k={row['k']}, {row['loss']}, negatives={row[NEGATIVES]}"


def lines(answers: list[AtBudget]) -> list[str]:
    """The recommendation per budget and the smallest sufficient budget, one line each."""
    out = []
    for answer in answers:
        best = answer.best
        ties = [setup(row) for row in answer.as_good()[1:]]
        also = f"; not significantly below it at 95 %: {'; '.join(ties)}" if ties else ""
        interval = best.get(f"{COMPARED} CI")
        shown = f" [{interval.low:.4f}, {interval.high:.4f}]" if interval else ""
        out.append(f"For budget {answer.budget:,.6g} {answer.unit}: {setup(best)} (nDCG@10 "
                   f"{best[COMPARED][0]:.4f}{shown}){also}.")
    found = smallest_sufficient(answers)
    if found:
        answer, difference = found
        versus = f" (its best row against the best of any budget: Δ {difference.mean:+.4f} [{difference.low:+.4f}, " \
                 f"{difference.high:+.4f}])" if difference is not None else ""
        out.append(f"Smallest budget whose quality is not significantly below the best: {answer.budget:,.6g} "
                   f"{answer.unit}, with {label(answer.best)}{versus}.")
    return out
