"""Evaluate stage: retrieval metrics on held-out queries.

Queries are a split's anchors; the corpus is that split's positives plus
distractors (train positives), so a model must find the one right API among
many plausible ones.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.stages.encoding import encode

VERSION = "1"
# Metric names logged to MLflow (which refuses '@'), and the evaluator's key suffix for each.
METRICS = {"ndcg_at_10": "ndcg@10", "mrr_at_10": "mrr@10", "recall_at_1": "recall@1",
           "recall_at_10": "recall@10", "recall_at_100": "recall@100", "map_at_100": "map@100"}


def distractors(train_ds, n: int, seed: int) -> list[str]:
    """Up to n train positives, a seeded sample so every model sees the same corpus."""
    positives = sorted(set(train_ds["positive"]))
    random.Random(seed).shuffle(positives)
    return positives[:n]


def _evaluator_with_progress():
    """InformationRetrievalEvaluator encoding through encoding.encode, so evaluations show progress."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    class WithProgress(InformationRetrievalEvaluator):
        def embed_inputs(self, model, sentences, encode_fn_name=None, prompt_name=None, prompt=None, **kwargs):
            what = {"query": "queries", "document": "corpus"}.get(encode_fn_name, "texts")
            return encode(model, list(sentences), encode_fn_name, f"{self.name} eval: {what}", self.batch_size,
                          prompt_name=prompt_name, prompt=prompt, convert_to_tensor=True,
                          truncate_dim=self.truncate_dim, **kwargs)

    return WithProgress


def ir_evaluator(ds, extra_corpus: list[str], name: str, batch_size: int,
                 query_prompt: str | None = None, corpus_prompt: str | None = None,
                 max_corpus: int | None = None):
    """InformationRetrievalEvaluator: each anchor's own positive is its one relevant document.

    With max_corpus the corpus keeps its first max_corpus documents (the split's positives come
    first) and queries whose positive was cut are dropped, so evaluation cost is bounded.
    """
    corpus = {}
    for text in list(ds["positive"]) + extra_corpus:
        corpus.setdefault(text, f"d{len(corpus)}")
    if max_corpus is not None:
        corpus = dict(list(corpus.items())[:max_corpus])
    pairs = [(anchor, pos) for anchor, pos in zip(ds["anchor"], ds["positive"]) if pos in corpus]
    queries = {f"q{i}": anchor for i, (anchor, _) in enumerate(pairs)}
    relevant = {f"q{i}": {corpus[pos]} for i, (_, pos) in enumerate(pairs)}
    return _evaluator_with_progress()(
        queries=queries,
        corpus={cid: text for text, cid in corpus.items()},
        relevant_docs=relevant,
        mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1, 10],
        precision_recall_at_k=[1, 10, 100], map_at_k=[100],
        batch_size=batch_size, name=name, write_csv=False,
        query_prompt=query_prompt, corpus_prompt=corpus_prompt,
    )


@dataclass
class DevSetup:
    """What dev evaluation during training runs on: an IR evaluator, the dev loss's data, or nothing."""

    evaluator: object = None
    loss_data: object = None
    sizes: dict[str, int] = field(default_factory=dict)  # eval/dev_* metrics

    @property
    def evaluates(self) -> bool:
        return self.evaluator is not None or self.loss_data is not None


def dev_setup(eval_cfg, splits, seed: int) -> DevSetup:
    """eval.kind=ir: dev queries against dev positives (+ distractors, capped at eval.dev_max_corpus);
    eval.kind=loss: the dev split for the loss; eval.cadence=none: nothing."""
    if eval_cfg.cadence == "none":
        return DevSetup()
    if eval_cfg.kind == "loss":
        return DevSetup(loss_data=splits["dev"], sizes={"eval/dev_queries": len(splits["dev"])})
    extra = distractors(splits["train"], eval_cfg.dev_distractors, seed)
    evaluator = ir_evaluator(splits["dev"], extra, "dev", eval_cfg.batch_size, eval_cfg.query_prompt,
                             eval_cfg.corpus_prompt, eval_cfg.dev_max_corpus)
    return DevSetup(evaluator=evaluator, sizes={"eval/dev_queries": len(evaluator.queries),
                                                "eval/dev_corpus": len(evaluator.corpus)})


def pick_metrics(raw: dict, name: str) -> dict[str, float]:
    """Our metric names from the evaluator's `{name}_cosine_*` keys."""
    return {ours: float(raw[f"{name}_cosine_{theirs}"]) for ours, theirs in METRICS.items()}


def run(model, test_ds, extra_corpus: list[str], batch_size: int, out_dir: Path,
        query_prompt: str | None = None, corpus_prompt: str | None = None) -> dict[str, float]:
    """Score `model` on the test split; write and return metrics.json."""
    evaluator = ir_evaluator(test_ds, extra_corpus, "test", batch_size, query_prompt, corpus_prompt)
    metrics = pick_metrics(evaluator(model), "test")
    metrics["corpus_size"] = len(evaluator.corpus)
    metrics["queries"] = len(evaluator.queries)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
