"""Every script under scripts/ runs on tiny data and prints what the README quotes from it,
so a benchmark cannot silently break."""

import json
import os
import subprocess
import sys

import pytest
import torch

import warm
from helpers import ROOT

# Other processes: the command line, launchers, benchmarks (make test runs them; make check does not).
pytestmark = pytest.mark.slow


def _script(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = warm.run([sys.executable, f"scripts/{name}", *args], cwd=ROOT, timeout=600, env=os.environ | (env or {}))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _table(stdout: str) -> list[list[str]]:
    """The cells of each Markdown table row, header and rule left out."""
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in stdout.splitlines()
            if line.startswith("| ")]
    return rows[1:]


def test_bench_train_cost_prints_predicted_and_measured_cost():
    result = _script("bench_train_cost.py", "--batch", "4", "--steps", "1", "--max-seq-length", "16")
    rows = _table(result.stdout)
    assert [(r[0], r[1], r[2], r[3], r[6]) for r in rows] == [
        ("mnrl", "0", "8", "1.0", "4×4"), ("mnrl", "8", "40", "5.0", "4×36"),
        ("mnrl", "64", "264", "33.0", "4×260"), ("hn_only", "64", "264", "33.0", "4×65")]
    assert all(float(r[7].split()[0]) > 0 for r in rows)  # measured s/step


def test_bench_mining_compares_one_pass_with_a_call_per_k():
    result = _script("bench_mining.py", "--max-rows", "200")
    lines = result.stdout.splitlines()
    per_k = [line.split() for line in lines if line.split() and line.split()[0] in
             ("1", "2", "4", "8", "16", "32", "48", "64")]
    assert [row[0] for row in per_k] == ["1", "2", "4", "8", "16", "32", "48", "64"]
    assert all(int(row[2]) > 0 and int(row[4]) > 0 for row in per_k)  # rows each way kept
    assert any(line.startswith("(b)/(a)") for line in lines)
    assert any(line.startswith("(c)") for line in lines)


def test_bench_eval_cost_runs_both_presets_and_prints_their_figures(tmp_path):
    result = _script("bench_eval_cost.py", "data.max_rows=300", "train.max_steps=10",
                     "eval.test_distractors=50", env={"HNPIPE_ROOT": str(tmp_path)})
    rows = {row[0]: row[1:] for row in _table(result.stdout)}
    assert rows["dev evaluations"] == ["5", "2"]
    assert all(float(value) >= 0 for value in rows["test nDCG@10"])
    assert "wall-time ratio slow/fast" in result.stdout


def test_bench_processes_times_one_and_two_processes():
    result = _script("bench_processes.py", "data.max_rows=300", "train.max_steps=2",
                     "eval.test_distractors=50")
    rows = {row[0]: row[1:] for row in _table(result.stdout)}
    assert set(rows) >= {"mining encode (s)", "training s/step", "test stage (s)", "whole run (s)"}
    assert all(float(value) > 0 for value in rows["training s/step"])
    assert rows["global batch"][:2] == ["16", "16"]  # 2 processes x 8 = 1 process x 16


def test_bench_step_times_the_plain_recipe_beside_each_mode_on_the_same_batches():
    result = _script("bench_step.py", "--table", "speed", "--model", "static", "--ks", "2", "--steps", "1",
                     "--batch", "4", "--max-seq-length", "16", "--refresh", "1", "data.max_rows=120")
    rows = _table(result.stdout)
    plain = "plain sentence-transformers"
    assert [r[1] for r in rows] == [plain, "live", "length-aware", "dedupe", "length-aware + dedupe",
                                    "frozen (+ both)", "bank (+ both)"]
    assert rows[1][6:] == rows[0][6:]  # live feeds the model what the plain recipe does: the same batches
    bank = rows[-1]
    assert bank[6].endswith("+ 0") and float(bank[5].split(" / ")[0]) > float(bank[2].split()[0])  # + refreshes
    assert "bank refresh: " in result.stdout and "machine:" in result.stdout


def test_bench_step_times_the_samplers_of_several_sources():
    result = _script("bench_step.py", "--table", "sampler", "--model", "static", "--steps", "1", "--batch", "8",
                     "--max-seq-length", "16", "data.languages=[de,fr]", "data.max_rows=80")
    rows = {row[0]: row[1:] for row in _table(result.stdout)}
    assert list(rows) == ["one source (the rows concatenated)", "proportional", "round_robin"]
    assert all(int(row[0]) > 0 and float(row[1]) > 0 for row in rows.values())
    assert "2 sources; a training step on them:" in result.stdout


def test_bench_step_trains_each_mode_over_seeds_for_its_quality():
    result = _script("bench_step.py", "--table", "quality", "--recipes", "live,bank (+ both)", "--quality-k", "2",
                     "--quality-steps", "2", "--seeds", "1", "--batch", "4", "--max-seq-length", "16",
                     "data.max_rows=120", "eval.test_distractors=20")
    rows = {row[0]: row for row in _table(result.stdout)}
    assert list(rows) == ["live", "bank (+ both)"]
    assert all(0 <= float(row[3]) <= 1 and row[1].endswith("± n/a (1 seed)") for row in rows.values())
    assert rows["live"][2] == "+0.0000"


def test_debian_pairs_reads_summaries_and_long_descriptions(tmp_path):
    status = tmp_path / "status"
    status.write_text("Package: a\nDescription: add users\n adds users.\n .\n Also groups.\nStatus: ok\n\n"
                      "Package: b\nDescription: no long text\n\n"
                      "Package: c\nDescription: add users\n the same summary again.\n")
    _script("debian_pairs.py", str(tmp_path / "pairs.jsonl"), "--status", str(status))
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert rows == [{"anchor": "add users", "positive": "adds users.\nAlso groups."}]


def test_bench_budget_trains_every_configuration_at_the_plain_recipes_seconds():
    result = _script("bench_budget.py", "--smoke")
    rows = {row[0]: row for row in _table(result.stdout)}
    assert list(rows) == ["plain sentence-transformers, k=0", "plain sentence-transformers, k=8", "pipeline live, k=8",
                          "pipeline frozen, k=8", "pipeline bank (mined ids), k=8", "pipeline bank online, k=8",
                          "pipeline bank online, k=32"]
    assert all(float(row[1]) >= 1 and 0 <= float(row[4]) <= 1 for row in rows.values())
    assert rows["plain sentence-transformers, k=8"][6] == ""  # the reference row
    budget = result.stdout.split("budget: ")[1].split()[0]
    assert rows["plain sentence-transformers, k=8"][2] == budget  # its own seconds are the budget
    assert result.stdout.count("target: ") == 2 and "machine:" in result.stdout


def test_device_check_smoke_runs_every_section_and_writes_one_json(tmp_path):
    out = tmp_path / "check.json"
    result = _script("device_check.py", "--mode", "smoke", "--out", str(out), env={"HNPIPE_ROOT": str(tmp_path)})
    report = json.loads(out.read_text())
    assert report["machine"]["mode"] == "smoke" and report["machine"]["gpu_count"] == 0
    assert report["machine"]["torch"] and report["machine"]["date"].startswith("20")
    sections = report["sections"]
    assert list(sections) == ["step_speed", "end_to_end", "encode", "torchrun"]
    speed = sections["step_speed"]
    assert speed["status"] == "ok" and {row["k"] for row in speed["rows"]} == {0, 2}
    recipes = {row["recipe"] for row in speed["rows"]}
    assert {"plain sentence-transformers", "live", "length-aware @ chunk_budget 32", "length-aware @ chunk_budget 256",
            "frozen (+ both) @ chunk_budget 32", "bank (+ both) @ chunk_budget 32"} == recipes
    assert all(row["s_per_step"] > 0 for row in speed["rows"])
    run = sections["end_to_end"]
    assert run["status"] == "ok" and run["exit_code"] == 0 and run["wall_s"] > run["time/total_s"] > 0
    assert run["chunk_budget/chosen"] == "1024"  # loss.chunk_budget=auto on the static model: the CPU's guess
    assert sections["encode"]["status"] == "ok" and sections["encode"]["texts_per_s"] > 0
    assert sections["torchrun"]["status"] == "skipped" and "at least 2" in sections["torchrun"]["reason"]
    rows = {row[0]: row[1:] for row in _table(result.stdout) if row[0] in sections}
    assert [status for status, *_ in rows.values()] == ["ok", "ok", "ok", "skipped"]
    assert f"written: {out}" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_device_check_refuses_the_gpu_mode_without_a_gpu():
    result = subprocess.run([sys.executable, "scripts/device_check.py", "--mode", "gpu"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.startswith("error: --mode gpu needs a CUDA device")
    assert "Traceback" not in result.stderr and "0 CUDA device(s)" in result.stderr
