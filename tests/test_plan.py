"""Plan mode prices a run (stages, cost, calibrated estimate) without training or an MLflow run."""

import re

import pytest


def _plan_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("plan ")]


@pytest.mark.fresh_store  # checks that no store is created
def test_plan_prints_stages_cost_and_estimate_without_a_run(cli):
    result = cli("k=3", "plan=true")
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = _plan_lines(result.stdout)
    assert "plan k=3 loss=mnrl batch=16" in line
    assert re.search(r"stages: split (cached|would run), embed (cached|would run), "
                     r"mine (cached|would run), base_eval", line)
    assert "80 texts" in line and "scores 16x64" in line and "6 steps" in line  # 16 * (2 + 3)
    assert re.search(r"calibration \((stand-in|mined) negatives, 3 steps at batch 16: measured\): "
                     r"[\d.]+ s/step", line)
    assert "training estimate" in line
    assert not (cli.root / "mlflow.db").exists()
    assert not list(cli.root.glob("outputs/runs/*/*/model"))


@pytest.mark.fresh_store  # checks that no store is created
def test_plan_multirun_prints_one_line_per_job(cli):
    result = cli.multirun("k=0,4", "loss=hn_only,mnrl", "plan=true")
    assert result.returncode != 0  # hn_only with k=0 is refused ...
    assert "k=0 is not allowed: at least 1 for loss=hn_only" in result.stderr
    assert "No job was started" in result.stderr and not list(cli.root.glob("outputs/multirun/*/*/0"))
    result = cli.multirun("k=0,16", "plan=true")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = _plan_lines(result.stdout)
    assert [line.split(" | ")[0].split()[1] for line in lines] == ["k=0", "k=16"]
    assert "mine" not in lines[0].split(" | ")[1]  # k=0 mines nothing
    assert "split cached" in lines[1]  # the first job's plan built it for the cost figures
    assert "texts/epoch" in lines[1] and "scores 16x272" in lines[1]
    # 288 texts a step is more than a calibration step may embed: measured smaller, scaled up.
    assert re.search(r"3 steps at batch \d+ of 16, scaled x[\d.]+ by padded tokens per step .*: estimated", lines[1])
    assert not (cli.root / "mlflow.db").exists()
