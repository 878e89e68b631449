"""Bad loss/k/batch and hardware combinations fail at compose time, each saying why."""

import importlib.util

import pytest
import torch

from helpers import assert_refused, compose
from pipeline.config import hardware
from pipeline.config.rules import validate
from pipeline.errors import PipelineError

NO_CUDA = not torch.cuda.is_available()
NO_XLA = importlib.util.find_spec("torch_xla") is None
CPU_BF16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@pytest.mark.parametrize("overrides,words", [
    (["loss=hn_only", "k=0"], ["k=0", "at least 1 for loss=hn_only", "own hard negatives"]),
    (["loss=triplet", "k=0"], ["k=0", "at least 1 for loss=triplet", "needs a hard negative"]),
    (["loss=gist", "model=minilm", "k=2"], ["k=2", "0 to 1 for loss=gist", "triplets only"]),
    (["loss=cached_mnrl"], ["model.kind='static'", "no batch dimension"]),
    (["loss=cached_mnrl", "model=minilm", "loss.mini_batch_size=0"], ["loss.mini_batch_size=0", "1 to train.batch_size=32"]),
    (["loss=cached_mnrl", "model=minilm", "loss.mini_batch_size=33"], ["loss.mini_batch_size=33", "cannot exceed the batch"]),
    (["loss=mnrl", "train.batch_size=1"], ["train.batch_size=1", "at least 2 for loss=mnrl", "in-batch"]),
    (["loss=cached_mnrl", "model=minilm", "train.batch_size=1", "loss.mini_batch_size=1"], ["at least 2 for loss=cached_mnrl"]),
    (["loss=gist", "k=1"], ["model.kind='static'", "transformers tokenizer"]),
    (["loss=triplet", "loss.distance=cosnie"], ["loss.distance='cosnie'", "euclidean, cosine"]),
    (["loss=mnrl", "+loss.mini_batch_size=4"], ["loss", "mini_batch_size"]),
    (["plan=maybe"], ["plan='maybe'", "true or false"]),
    (["hardware.precision=fp16"], ["precision='fp16'", "needs a CUDA GPU"]),
])
def test_refused_combinations_say_why(overrides, words):
    assert_refused(overrides, words)


@pytest.mark.parametrize("overrides", [
    ["loss=hn_only", "k=1", "train.batch_size=1"],  # no in-batch negatives: one row is enough
    ["loss=triplet", "k=3"],
    ["loss=cached_mnrl", "model=minilm", "loss.mini_batch_size=32"],
    ["loss=gist", "model=minilm", "k=0"],
])
def test_accepted_combinations(overrides):
    validate(compose(overrides))


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_cuda_where_there_is_none_names_what_was_found():
    with pytest.raises(PipelineError) as info:
        validate(compose(["hardware=cuda"]))
    message = str(info.value)
    assert "hardware=cuda" in message and "no usable CUDA device" in message
    assert f"torch {torch.__version__}" in message and "0 CUDA device(s)" in message


@pytest.mark.skipif(not NO_XLA, reason="torch_xla is installed")
def test_tpu_without_torch_xla_says_so():
    with pytest.raises(PipelineError, match="hardware=tpu needs torch_xla.*not installed"):
        validate(compose(["hardware=tpu"]))


@pytest.mark.skipif(CPU_BF16, reason="this CPU has native bf16")
def test_bf16_on_a_cpu_without_it_is_refused():
    with pytest.raises(PipelineError, match="no native bf16"):
        validate(compose(["hardware=cpu", "hardware.precision=bf16"]))


def test_auto_falls_back_silently_to_what_is_there():
    resolved = hardware.resolve(compose(["hardware=auto"]).hardware)
    expected = "cuda" if not NO_CUDA else "tpu" if not NO_XLA else "cpu"
    assert resolved.device == expected
    if expected == "cpu":
        assert resolved.precision == "fp32" and resolved.device_count == 1
        assert resolved.trainer_flags() == {"use_cpu": True, "bf16": False, "fp16": False}

