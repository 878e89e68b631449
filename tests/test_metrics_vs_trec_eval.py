"""Per-query retrieval metrics equal a trusted IR library's on the same rankings, ties included.

The library is ir_measures, whose default pipeline hands nDCG@10, R@k and AP@100 to pytrec_eval
(trec_eval's C code) and RR@10 to its MS MARCO provider (pytrec_eval has no cut-off for RR); MRR@10
is also checked against trec_eval's own recip_rank on each ranking cut at 10.

Rankings are known exactly, not only "up to float noise": query i is the one-hot vector e_i and
every document is a vector of small integers whose squared norm is the same integer S for all of
them (the query dimensions hold the document's chosen level for each query, four padding
dimensions make up S - sum(levels²), by Lagrange's four-square theorem). In float32 every partial
sum of squares is an exact integer, so every document has the same norm, its cosine with query i
is its level divided by that norm, and two documents tie exactly when their levels are equal. The
order the pipeline documents, (cosine descending, corpus id ascending), is therefore (level
descending, id ascending), which the tests compute without the pipeline.

Ties: trec_eval orders a run by score descending and breaks ties by document id *descending*
(ir_measures' MS MARCO RR breaks them ascending). So raw tied scores would make the library rank
tied documents differently from the pipeline. The main comparison therefore feeds the library
rank-derived scores, score = N - rank, in the order the pipeline documents: no two scores tie, and
what is compared is the metric arithmetic (nDCG discount and ideal, MRR cut-off, recall
denominator, AP normalisation) on one ranking the test fixes, plus the pipeline's own ranking,
since its metrics only match if it ranked exactly that way. `test_raw_tied_scores_...` separately
feeds the raw tied levels and shows which order each provider uses.

Conventions checked rather than assumed (test_library_conventions): pytrec_eval's nDCG uses the
relevance value as gain (not 2^rel - 1; with binary relevance, as here, they are the same) and
discounts rank r by log2(r + 1), as sentence-transformers does; its AP@100 divides by the number of
relevant documents where sentence-transformers' MAP@100 divides by min(100, that number), so the
two differ only for a query with more than 100 relevant documents, tested as such below.
"""

import math

import ir_measures
import numpy as np
import pytest
import pytrec_eval
from ir_measures import AP, RR, R, nDCG

from pipeline.stages.retrieval_metrics import METRICS, retrieval_scores

MEASURES = {"ndcg_at_10": nDCG @ 10, "mrr_at_10": RR @ 10, "recall_at_1": R @ 1, "recall_at_10": R @ 10,
            "recall_at_100": R @ 100, "map_at_100": AP @ 100}
assert set(MEASURES) == set(METRICS)


def _four_squares(r: int) -> tuple[int, int, int, int]:
    """a >= b >= c >= d >= 0 with a² + b² + c² + d² = r (one always exists)."""
    for a in range(math.isqrt(r), -1, -1):
        for b in range(min(a, math.isqrt(r - a * a)), -1, -1):
            for c in range(min(b, math.isqrt(r - a * a - b * b)), -1, -1):
                rest = r - a * a - b * b - c * c
                d = math.isqrt(rest)
                if d * d == rest and d <= c:
                    return a, b, c, d
    raise AssertionError(r)


def _embeddings(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Query i = e_i; document j's cosine with query i is levels[i, j] / sqrt(S), exactly ordered."""
    n_queries, n_docs = levels.shape
    squares = (levels.astype(np.int64) ** 2).sum(axis=0)
    total = int(squares.max()) + 1
    assert total < 2**24  # every partial sum of squares is exact in float32
    padding = np.array([_four_squares(total - int(s)) for s in squares])
    corpus = np.concatenate([levels.T, padding], axis=1).astype(np.float32)
    assert ((corpus.astype(np.int64) ** 2).sum(axis=1) == total).all()
    queries = np.eye(n_queries, n_queries + 4, dtype=np.float32)
    return queries, corpus


def _order(levels_row, corpus_ids, id_descending=False) -> list[str]:
    """Corpus ids by (level descending, id ascending), or id descending (trec_eval's tie order)."""
    if id_descending:
        return sorted(corpus_ids, key=lambda d: (levels_row[d], d), reverse=True)
    return sorted(corpus_ids, key=lambda d: (-levels_row[d], d))


def _rank_run(orders: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Scores N - rank: no ties, so any tie rule in the library reads back this exact order."""
    return {qid: {doc: float(len(order) - rank) for rank, doc in enumerate(order)}
            for qid, order in orders.items()}


def _library(qrels, run) -> dict[str, dict[str, float]]:
    """ir_measures' value per query and pipeline metric name, for every query in qrels."""
    names = {measure: name for name, measure in MEASURES.items()}
    values = {qid: {} for qid in qrels}
    for metric in ir_measures.iter_calc(list(MEASURES.values()), qrels, run):
        values[metric.query_id][names[metric.measure]] = metric.value
    assert all(set(row) == set(METRICS) for row in values.values())
    return values


def _trec_eval_mrr_at_10(qrels, orders) -> dict[str, float]:
    """trec_eval's recip_rank on each ranking cut at 10, i.e. MRR@10 computed by trec_eval."""
    top_10 = _rank_run({qid: order[:10] for qid, order in orders.items()})
    result = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top_10)
    return {qid: result[qid]["recip_rank"] for qid in qrels}


def _case(levels: np.ndarray, corpus_ids: list[str], relevant: dict[str, set[str]]):
    """The pipeline's table, and the library's on the pipeline's documented order, for one case."""
    query_ids = list(relevant)
    queries, corpus = _embeddings(levels)
    ours = retrieval_scores(queries, corpus, query_ids, corpus_ids, relevant).table()
    rows = {qid: dict(zip(corpus_ids, levels[i].tolist())) for i, qid in enumerate(query_ids)}
    orders = {qid: _order(rows[qid], corpus_ids) for qid in query_ids}
    qrels = {qid: {doc: 1 for doc in docs} for qid, docs in relevant.items()}
    return ours, _library(qrels, _rank_run(orders)), _trec_eval_mrr_at_10(qrels, orders), orders, rows, qrels


def _assert_equal(ours, theirs):
    for qid in theirs:
        assert ours[qid] == pytest.approx(theirs[qid], rel=1e-12, abs=1e-12), qid


# Handcrafted queries over 150 documents "d0".."d149" (as text d0 < d1 < d10 < d100 < ... < d99).
# Each query: its levels from the top as (level, how many documents), spread over the documents by
# a seeded permutation, and its relevant documents as ranks in the documented order (1-based).
N_DOCS = 150
HANDCRAFTED = {
    # A tie of 6 documents at ranks 8-13 spans the top-10 cut; relevant at 8 and 12 inside it.
    "tie_across_10": ([(9, 7), (8, 6), (0, 137)], {2, 8, 12}),
    # A tie of 30 at ranks 96-125 spans the top-100 cut; nothing relevant in the top 10.
    "tie_across_100": ([(9, 95), (3, 30), (0, 25)], {97, 110}),
    # A tie fills exactly the top 10; the first hit is rank 11 (MRR@10 = 0, RR would be 1/11), and
    # one relevant document lies outside the top 100.
    "first_hit_at_11": ([(5, 10), (4, 1), (0, 139)], {11, 140}),
    # Every document ties: the order is the ids' text order alone, at and across both cuts.
    "all_tied": ([(1, 150)], {1, 10, 11, 100, 101}),
    # 12 relevant documents: nDCG's ideal ranking stops at 10, recall@10 cannot reach 1.
    "many_relevant": ([(7, 4), (6, 20), (0, 126)], {1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 30}),
    # No ties at all.
    "distinct": ([(N_DOCS - i, 1) for i in range(N_DOCS)], {3, 50}),
}


def _handcrafted():
    rng = np.random.default_rng(7)
    corpus_ids = [f"d{i}" for i in range(N_DOCS)]
    levels = np.zeros((len(HANDCRAFTED), N_DOCS), dtype=np.int64)
    relevant = {}
    for i, (qid, (tiers, ranks)) in enumerate(HANDCRAFTED.items()):
        assert sum(count for _, count in tiers) == N_DOCS
        levels[i, rng.permutation(N_DOCS)] = np.repeat([level for level, _ in tiers],
                                                       [count for _, count in tiers])
        order = _order(dict(zip(corpus_ids, levels[i].tolist())), corpus_ids)
        relevant[qid] = {order[rank - 1] for rank in ranks}
    return levels, corpus_ids, relevant


def test_handcrafted_rankings_with_ties_equal_the_library():
    levels, corpus_ids, relevant = _handcrafted()
    ours, theirs, trec_mrr, orders, rows, _ = _case(levels, corpus_ids, relevant)
    # The cases are what their comments say (read off the test's own order, not the pipeline).
    ranks = {qid: sorted(order.index(doc) + 1 for doc in relevant[qid]) for qid, order in orders.items()}
    assert ranks == {qid: sorted(wanted) for qid, (_, wanted) in HANDCRAFTED.items()}
    level_at = {qid: [rows[qid][doc] for doc in order] for qid, order in orders.items()}
    assert level_at["tie_across_10"][6] > level_at["tie_across_10"][7] == level_at["tie_across_10"][12]
    assert level_at["tie_across_100"][95] == level_at["tie_across_100"][124]
    assert len(set(rows["all_tied"].values())) == 1
    _assert_equal(ours, theirs)
    assert {qid: row["mrr_at_10"] for qid, row in ours.items()} == pytest.approx(trec_mrr, abs=1e-12)


def test_random_rankings_with_injected_ties_equal_the_library():
    rng = np.random.default_rng(2024)
    n_queries, n_docs = 50, 300
    corpus_ids = [f"doc{i}" for i in rng.permutation(n_docs)]
    # Levels 0..400 for 300 documents already collide here and there; every other query also gets
    # a tie of 8 documents around rank 10 and a tie of 12 around rank 100.
    levels = rng.integers(0, 401, size=(n_queries, n_docs))
    relevant = {}
    for i in range(n_queries):
        by_rank = np.lexsort((np.array(corpus_ids), -levels[i]))
        if i % 2 == 0:
            levels[i, by_rank[6:14]] = levels[i, by_rank[6]]
            levels[i, by_rank[94:106]] = levels[i, by_rank[94]]
        order = _order(dict(zip(corpus_ids, levels[i].tolist())), corpus_ids)
        # 1-3 relevant documents, half of them drawn from the top 15, the rest from anywhere.
        ranks = {int(rng.integers(0, 15)) if rng.random() < 0.5 else int(rng.integers(0, n_docs))
                 for _ in range(int(rng.integers(1, 4)))}
        relevant[f"q{i}"] = {order[r] for r in ranks}
    ours, theirs, trec_mrr, orders, *_ = _case(levels, corpus_ids, relevant)
    # Ties are there and the cases vary: first hits past rank 10, relevant documents past rank 100.
    assert all(np.unique(row).size < n_docs for row in levels)
    ranks = [sorted(orders[qid].index(doc) for doc in docs) for qid, docs in relevant.items()]
    assert sum(r[0] < 10 for r in ranks) > 10 and sum(10 <= r[0] < 100 for r in ranks) > 5
    assert sum(r[-1] >= 100 for r in ranks) > 10
    assert len({len(docs) for docs in relevant.values()}) == 3
    _assert_equal(ours, theirs)
    assert {qid: row["mrr_at_10"] for qid, row in ours.items()} == pytest.approx(trec_mrr, abs=1e-12)


def test_raw_tied_scores_show_each_providers_tie_order():
    """Fed the raw tied levels, trec_eval ranks tied documents by id descending and ir_measures'
    MS MARCO RR@10 by id ascending; the pipeline's values are those of id ascending."""
    levels, corpus_ids, relevant = _handcrafted()
    ours, _, _, _, rows, qrels = _case(levels, corpus_ids, relevant)
    raw_run = {qid: {doc: float(level) for doc, level in row.items()} for qid, row in rows.items()}
    raw = _library(qrels, raw_run)
    descending = _library(qrels, _rank_run({qid: _order(row, corpus_ids, id_descending=True)
                                            for qid, row in rows.items()}))
    for qid in qrels:
        trec_measures = [m for m in METRICS if m != "mrr_at_10"]
        assert {m: raw[qid][m] for m in trec_measures} == pytest.approx(
            {m: descending[qid][m] for m in trec_measures}, abs=1e-12), qid
        assert raw[qid]["mrr_at_10"] == pytest.approx(ours[qid]["mrr_at_10"], abs=1e-12), qid
    # Where the tie order matters, trec_eval on raw scores disagrees with the pipeline.
    assert raw["tie_across_10"]["ndcg_at_10"] != pytest.approx(ours["tie_across_10"]["ndcg_at_10"])
    assert raw["tie_across_100"]["recall_at_100"] == 0 < ours["tie_across_100"]["recall_at_100"]
    assert raw["all_tied"]["recall_at_1"] == 0 < ours["all_tied"]["recall_at_1"]
    assert raw["distinct"] == pytest.approx(ours["distinct"], abs=1e-12)  # no ties, no difference


def test_map_at_100_divides_by_at_most_100_relevant_documents_where_trec_eval_divides_by_all():
    rng = np.random.default_rng(3)
    corpus_ids = [f"d{i:03d}" for i in range(300)]
    levels = rng.integers(0, 50, size=(1, 300))
    order = _order(dict(zip(corpus_ids, levels[0].tolist())), corpus_ids)
    relevant = {"q": set(order[::2])}  # 150 relevant documents, every other rank
    ours, theirs, *_ = _case(levels, corpus_ids, relevant)
    assert ours["q"]["map_at_100"] == pytest.approx(theirs["q"]["map_at_100"] * 150 / 100, rel=1e-12)
    assert ours["q"]["map_at_100"] == pytest.approx(sum((k + 1) / (2 * k + 1) for k in range(50)) / 100)
    del ours["q"]["map_at_100"], theirs["q"]["map_at_100"]
    _assert_equal(ours, theirs)


def test_library_conventions():
    # Which provider computes what: trec_eval for nDCG, R and AP; MS MARCO's code for RR@10.
    for name, measure in MEASURES.items():
        provider = "msmarco" if name == "mrr_at_10" else "pytrec_eval"
        assert [p.NAME for p in ir_measures.DefaultPipeline.providers
                if p.is_available() and p.supports(measure)][0] == provider, name
    # nDCG: linear gains and the discount log2(rank + 1): relevance 2 at rank 2, 1 at rank 1.
    [value] = ir_measures.iter_calc([nDCG @ 10], {"q": {"a": 2, "b": 1}}, {"q": {"b": 2.0, "a": 1.0}})
    assert value.value == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)), abs=1e-12)
    # Tied scores: trec_eval puts "b" before "a", MS MARCO "a" before "b".
    values = {m.measure: m.value for m in ir_measures.iter_calc([RR, RR @ 10], {"q": {"a": 1}},
                                                                {"q": {"a": 1.0, "b": 1.0}})}
    assert values == {RR: 0.5, RR @ 10: 1.0}
