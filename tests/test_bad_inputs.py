"""What users get wrong, through the real CLI: each case exits non-zero with a clear
message, leaves no MLflow run RUNNING and writes no stage-cache entry."""

import importlib.util
from pathlib import Path

import pytest
import torch

from helpers import write_jsonl

GROUPS = ["data", "split", "miner", "loss", "model", "train", "eval", "hardware", "mlflow"]


def _files(tmp: Path, rows=None, name="pairs.jsonl", text=None) -> str:
    path = tmp / name
    if text is not None:
        path.write_text(text)
        return str(path)
    return str(write_jsonl(path, rows))


# (id, overrides given the temp dir, words the message must contain)
CASES = [
    ("k_negative", lambda t: ["k=-1"], ["k=-1", "0 to 64"]),
    ("k_too_large", lambda t: ["k=65"], ["k=65", "0 to 64"]),
    ("k_float", lambda t: ["k=8.5"], ["k=8.5", "integer"]),
    ("k_word", lambda t: ["k=eight"], ["k='eight'", "integer"]),
    *[(f"unknown_{g}_option", lambda t, g=g: [f"{g}=nope"], [f"Could not find '{g}/nope'"])
      for g in GROUPS],
    ("ratios_sum_0_9", lambda t: ["split.train=0.8"], ["sum to 0.9", "not 1"]),
    ("test_ratio_0", lambda t: ["split.test=0", "split.train=0.99"], ["split.test=0", "above 0"]),
    ("data_file_missing", lambda t: ["data=files", f"data.path={t}/missing.jsonl"],
     ["data.path=", "no such file"]),
    ("data_path_not_given", lambda t: ["data=files"], ["data=files needs a file", "data.path="]),
    ("data_other_columns", lambda t: ["data=files", "data.path=" + _files(
        t, [{"question": "q", "answer": "a"}])],
     ["data.anchor_column='anchor'", "no such column", "['question', 'answer']"]),
    ("data_empty", lambda t: ["data=files", "data.path=" + _files(t, text="")], ["no rows", "empty"]),
    ("data_non_text_column", lambda t: ["data=files", "data.path=" + _files(
        t, [{"anchor": 3, "positive": "text"}])], ["data.anchor_column='anchor'", "must hold text"]),
    ("model_path_missing", lambda t: ["model=hub", f"model.id={t}/no-model"],
     ["model.id=", "no such model directory"]),
    ("hub_model_offline", lambda t: ["model=hub", "model.id=someone/not-cached-model"],
     ["HF_HUB_OFFLINE=1", "model=minilm or model=static"]),
    ("batch_size_1", lambda t: ["train.batch_size=1"], ["train.batch_size=1", "at least 2"]),
    ("range_too_small_for_k", lambda t: ["k=8", "miner.range_max=4"],
     ["miner.range_max=4", "Raise miner.range_max"]),
    pytest.param("hardware_cuda_missing", lambda t: ["hardware=cuda"],
                 ["hardware=cuda", "no usable CUDA", "found"],
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    pytest.param("hardware_tpu_missing", lambda t: ["hardware=tpu"], ["hardware=tpu", "torch_xla"],
                 marks=pytest.mark.skipif(importlib.util.find_spec("torch_xla") is not None,
                                          reason="torch_xla is installed")),
    ("loss_needs_negatives_k0", lambda t: ["loss=hn_only", "k=0"], ["k=0", "loss=hn_only"]),
    ("cached_mnrl_mini_batch_too_large", lambda t: ["model=minilm", "loss=cached_mnrl",
                                                    "loss.mini_batch_size=64"],
     ["loss.mini_batch_size=64", "train.batch_size=16"]),
    ("eval_every_not_a_fraction", lambda t: ["eval=fraction", "eval.every=3"],
     ["eval.every=3", "fraction of training"]),
    ("unknown_key", lambda t: ["+train.lr=0.1"], ["train", "lr", "Expected fields"]),
    ("outputs_dir_unwritable", lambda t: ["paths.outputs_dir=/etc/passwd/outputs"],
     ["paths.outputs_dir=", "not writable"]),
    ("tracking_uri_unknown_scheme", lambda t: ["mlflow.tracking_uri=foo://bar"],
     ["unknown scheme 'foo'", "sqlite"]),
    ("tracking_server_down", lambda t: ["mlflow.tracking_uri=http://127.0.0.1:9"],
     ["does not answer", "mlflow server"]),
]


def _cache_entries(cache: Path) -> list[Path]:
    return [p for stage in cache.iterdir() if stage.is_dir() for p in stage.iterdir() if p.is_dir()] \
        if cache.exists() else []


def _case_id(case) -> str:
    return (case.values if hasattr(case, "values") else case)[0]


@pytest.mark.parametrize("case,overrides,words", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_fails_clearly_and_leaves_nothing_behind(case, overrides, words, cli, tmp_path):
    cache = tmp_path / "own-cache"
    result = cli(*overrides(tmp_path), f"paths.cache_dir={cache}")
    assert result.returncode != 0
    for word in words:
        assert word in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert _cache_entries(cache) == []
    if (cli.root / "mlflow.db").exists():
        assert all(run.info.status != "RUNNING" for run in cli.runs())

