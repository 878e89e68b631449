"""The loss group: hn_only is cross-entropy over each row's own 1 + k scores; triplet averages over k."""

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer import losses

from pipeline.losses.hn_only import HardNegativesOnlyLoss
from pipeline.losses.multi_triplet import MultiNegativeTripletLoss


def _embeddings(batch, k, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, dim, generator=generator) for _ in range(2 + k)]


@pytest.mark.parametrize("batch,k", [(4, 1), (3, 5)])
def test_hn_only_equals_cross_entropy_over_own_positive_and_negatives(batch, k):
    anchors, *candidates = _embeddings(batch, k)
    loss = HardNegativesOnlyLoss(model=None, scale=20.0)
    scores = torch.stack([F.cosine_similarity(anchors, c, dim=-1) for c in candidates], dim=1) * 20.0
    assert scores.shape == (batch, 1 + k)
    expected = F.cross_entropy(scores, torch.zeros(batch, dtype=torch.long))
    assert torch.allclose(loss.compute_loss_from_embeddings([anchors, *candidates]), expected)


def test_hn_only_drops_in_batch_negatives_that_mnrl_uses():
    embeddings = _embeddings(4, 2)
    mnrl = losses.MultipleNegativesRankingLoss(model=None)
    hn_only = HardNegativesOnlyLoss(model=None)
    # MNRL adds the other rows' candidates to the softmax: its loss is strictly larger ...
    assert mnrl.compute_loss_from_embeddings(embeddings, None) > hn_only.compute_loss_from_embeddings(embeddings)
    # ... and with one row there are none, so the two agree.
    single = [e[:1] for e in embeddings]
    assert torch.allclose(mnrl.compute_loss_from_embeddings(single, None),
                          hn_only.compute_loss_from_embeddings(single))


def test_hn_only_refuses_rows_without_negatives_and_describes_itself():
    loss = HardNegativesOnlyLoss(model=None, scale=10.0)
    with pytest.raises(ValueError, match="at least one negative"):
        loss.compute_loss_from_embeddings(_embeddings(2, 0))
    assert loss.get_config_dict() == {"scale": 10.0}
    assert loss.temperature == 0.1
    assert "Dense Passage Retrieval" in loss.citation


def test_triplet_over_k_negatives_is_the_mean_of_single_triplets():
    anchor, positive, *negatives = _embeddings(4, 3)
    multi = MultiNegativeTripletLoss(model=None)
    single = losses.TripletLoss(model=None)
    per_negative = [single.compute_loss_from_embeddings([anchor, positive, n], None) for n in negatives]
    assert torch.allclose(multi.compute_loss_from_embeddings([anchor, positive, *negatives]),
                          torch.stack(per_negative).mean())
    assert torch.allclose(multi.compute_loss_from_embeddings([anchor, positive, negatives[0]]), per_negative[0])


def test_score_shape_counts_each_mnrl_direction_block():
    """The cost model's score matrix: query_to_doc's B(1+k) columns, plus B for query_to_query and for
    doc_to_query, B(1+k) for doc_to_doc (sentence-transformers' joint softmax concatenates them)."""
    from pipeline.losses import LOSSES

    mnrl = LOSSES["mnrl"]
    assert mnrl.score_shape(4, 2) == mnrl.score_shape(4, 2, 1, ["query_to_doc"]) == (4, 12)
    assert mnrl.score_shape(4, 2, 1, ["query_to_doc", "doc_to_query"]) == (4, 16)
    assert mnrl.score_shape(4, 2, 2, ["query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"]) == \
        (4, 24 + 8 + 8 + 24)
