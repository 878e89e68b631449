"""Per-query retrieval metrics, each query's score exactly as InformationRetrievalEvaluator scores it.

A mean hides which queries moved; per-query scores let the report put a confidence interval on a
mean and compare two runs query by query. The test stage (pipeline.stages.evaluate) encodes
queries and corpus itself (so encoding can be split across processes) and hands the embeddings
to `retrieval_scores`.

Matches sentence-transformers 6.2's evaluator with cosine similarity: the top 100 documents under
the order (score descending, corpus id ascending), binary relevance, nDCG's ideal ranking from the
number of relevant documents, MAP@100 divided by min(100, relevant documents).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

# The pipeline's metric names (MLflow refuses '@'); the deepest any of them reads is TOP_K.
METRICS = ("ndcg_at_10", "mrr_at_10", "recall_at_1", "recall_at_10", "recall_at_100", "map_at_100")
TOP_K = 100
# Query-by-corpus scores held at once: 2**24 float32 scores is 64 MiB, whatever the corpus size.
SCORES_PER_CHUNK = 2**24


@dataclass(frozen=True)
class PerQueryScores:
    """One value per query and metric: `values[metric][i]` belongs to `query_ids[i]`."""

    query_ids: list[str]
    values: dict[str, np.ndarray]

    def means(self) -> dict[str, float]:
        """What InformationRetrievalEvaluator reports, under the pipeline's metric names."""
        return {metric: float(np.mean(column)) for metric, column in self.values.items()}

    def table(self) -> dict[str, dict[str, float]]:
        """query id -> metric -> value, JSON-ready (e.g. a run's per-query artifact)."""
        return {qid: {metric: float(column[i]) for metric, column in self.values.items()}
                for i, qid in enumerate(self.query_ids)}


def retrieval_scores(query_embeddings, corpus_embeddings, query_ids: Sequence[str],
                     corpus_ids: Sequence[str], relevant: dict[str, set[str]],
                     scores_per_chunk: int = SCORES_PER_CHUNK) -> PerQueryScores:
    """Score each query's top-100 cosine neighbours against its relevant documents.

    Embeddings are tensors or arrays, row i of each belonging to query_ids[i] / corpus_ids[i];
    scoring runs on their device, a chunk of queries at a time so memory stays bounded.
    """
    if len(query_ids) != len(query_embeddings) or len(corpus_ids) != len(corpus_embeddings):
        raise ValueError(f"{len(query_ids)} query ids for {len(query_embeddings)} query embeddings, "
                         f"{len(corpus_ids)} corpus ids for {len(corpus_embeddings)} corpus embeddings")
    if not query_ids or not corpus_ids:
        raise ValueError(f"nothing to score: {len(query_ids)} queries, {len(corpus_ids)} documents")
    for name, ids in (("query", query_ids), ("corpus", corpus_ids)):
        if len(set(ids)) != len(ids):
            raise ValueError(f"{name} ids repeat; each needs its own id")
    unjudged = [qid for qid in query_ids if not relevant.get(qid)]
    if unjudged:
        raise ValueError(f"{len(unjudged)} queries have no relevant document, e.g. {unjudged[:3]}; "
                         "InformationRetrievalEvaluator would drop them, so leave them out")
    # Columns in ascending id order: then a column's index is its rank among ids, the tie-breaker.
    by_id = sorted(range(len(corpus_ids)), key=corpus_ids.__getitem__)
    sorted_ids = [corpus_ids[i] for i in by_id]
    corpus = _unit_rows(corpus_embeddings)[by_id]
    queries = _unit_rows(query_embeddings)
    depth = min(TOP_K, len(corpus_ids))
    hits: np.ndarray = np.zeros((len(query_ids), TOP_K), dtype=bool)
    chunk = max(1, scores_per_chunk // len(corpus_ids))
    for start in range(0, len(query_ids), chunk):
        ranked = _top(torch.mm(queries[start:start + chunk], corpus.transpose(0, 1)), depth).cpu().tolist()
        for row, columns in enumerate(ranked):
            wanted = relevant[query_ids[start + row]]
            hits[start + row, :depth] = [sorted_ids[column] in wanted for column in columns]
    n_relevant = np.array([len(relevant[qid]) for qid in query_ids])
    return PerQueryScores(list(query_ids), _metrics(hits, n_relevant))


def _unit_rows(embeddings) -> torch.Tensor:
    """Rows scaled to length 1, the same call as sentence_transformers' cos_sim makes."""
    return torch.nn.functional.normalize(torch.as_tensor(embeddings), p=2, dim=-1)


def _top(scores: torch.Tensor, depth: int) -> torch.Tensor:
    """Column indices of each row's `depth` best scores, ordered by (score desc, column asc).

    torch.topk breaks ties arbitrarily, so rows with ties at the cut pick the lowest columns among
    the tied ones, as the evaluator does: its metrics then do not depend on how it chunks.
    """
    values, columns = scores.topk(depth, dim=1)
    cut = values[:, -1:]
    tied = (scores >= cut).sum(dim=1) > depth
    if tied.any():
        tied_scores, tied_cut = scores[tied], cut[tied]
        n = scores.shape[1]
        index = torch.arange(n, device=scores.device).expand_as(tied_scores)
        keys = torch.where(tied_scores > tied_cut, index, 2 * n)
        keys = torch.where(tied_scores == tied_cut, index + n, keys)
        columns[tied] = keys.topk(depth, dim=1, largest=False).indices
    columns = columns.sort(dim=1).values
    order = scores.gather(1, columns).sort(dim=1, descending=True, stable=True).indices
    return columns.gather(1, order)


def _metrics(hits: np.ndarray, n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric per query from `hits[q, r]` (is the document at rank r+1 relevant to q)."""
    found: np.ndarray = hits.astype(float)
    log_ranks = np.log2(np.arange(2, TOP_K + 2))  # log2(rank + 1), the nDCG discount
    dcg = (found[:, :10] / log_ranks[:10]).sum(axis=1)
    ideal = np.cumsum(1 / log_ranks[:10])[np.minimum(n_relevant, 10) - 1]
    first_hit = hits[:, :10].argmax(axis=1)
    precision_at_rank = np.cumsum(found, axis=1) / np.arange(1, TOP_K + 1)
    return {
        "ndcg_at_10": dcg / ideal,
        "mrr_at_10": np.where(hits[:, :10].any(axis=1), 1 / (first_hit + 1), 0.0),
        "recall_at_1": found[:, :1].sum(axis=1) / n_relevant,
        "recall_at_10": found[:, :10].sum(axis=1) / n_relevant,
        "recall_at_100": found.sum(axis=1) / n_relevant,
        "map_at_100": (precision_at_rank * found).sum(axis=1) / np.minimum(TOP_K, n_relevant),
    }
