"""Miner presets compose; bad miner settings stop the run with a message naming the key."""

import importlib.util

import pytest

from helpers import assert_refused, compose
from pipeline.config.rules import validate
from pipeline.errors import PipelineError


@pytest.mark.parametrize("preset,expected", [
    ("top", {"sampling_strategy": "top", "range_min": 0}),
    ("range", {"range_min": 10, "range_max": 100}),
    ("nv_retriever", {"relative_margin": 0.05, "sampling_strategy": "top"}),
    ("margin", {"absolute_margin": 0.1}),
    ("random", {"sampling_strategy": "random"}),
])
def test_presets_set_what_their_names_promise(preset, expected):
    miner = compose([f"miner={preset}"]).miner
    assert {key: miner[key] for key in expected} == expected


@pytest.mark.parametrize("overrides,words", [
    (["miner.range_min=100"], ["miner.range_min=100", "below miner.range_max=100"]),
    (["miner.range_min=-1"], ["miner.range_min=-1", "0 or more"]),
    (["miner.range_max=0"], ["miner.range_min=0", "below miner.range_max=0"]),
    (["miner.absolute_margin=-0.1"], ["miner.absolute_margin=-0.1", "0 to 2"]),
    (["miner.absolute_margin=2.5"], ["miner.absolute_margin=2.5", "0 to 2"]),
    (["miner.relative_margin=1.5"], ["miner.relative_margin=1.5", "0 to 1"]),
    (["miner.min_score=0.8", "miner.max_score=0.5"], ["miner.min_score=0.8", "below miner.max_score=0.5"]),
    (["k=64", "miner=range", "miner.range_max=50"], ["miner.range_max=50", "range_min + k = 74", "Raise miner.range_max",
                               "miner.on_short=fill"]),
    (["miner.on_short=pad"], ["miner.on_short='pad'", "drop, fill"]),
    (["miner.order=random"], ["miner.order='random'", "rank, shuffled, reversed"]),
    (["miner.cross_encoder=/no/such/cross-encoder"], ["miner.cross_encoder='/no/such/cross-encoder'",
                                                       "no such directory"]),
])
def test_bad_miner_settings_name_the_key(overrides, words):
    assert_refused(overrides, words)


def test_fill_lets_k_exceed_the_range():
    validate(compose(["model=static", "k=64", "miner=range", "miner.range_max=50", "miner.on_short=fill"]))


@pytest.mark.skipif(importlib.util.find_spec("faiss") is not None, reason="faiss is installed")
def test_use_faiss_without_faiss_says_how_to_install_it():
    with pytest.raises(PipelineError, match=r"hnpipe\[faiss\]"):
        validate(compose(["model=static", "miner.use_faiss=true"]))


def test_cli_refuses_a_missing_cross_encoder_before_loading_anything(cli, tmp_path):
    missing = tmp_path / "no-cross-encoder"
    result = cli(f"miner.cross_encoder={missing}")
    assert result.returncode == 2
    assert f"miner.cross_encoder='{missing}'" in result.stderr
    assert cli.runs() == []
