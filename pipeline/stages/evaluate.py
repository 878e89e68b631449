"""Evaluate stage: retrieval metrics on held-out queries, one score per query.

The test set is the random split's test part (queries its anchors, the corpus its
positives plus train positives as distractors, so a model must find the right API
among many plausible ones) or a fixed one (eval.test). The stage encodes queries
and corpus itself, through pipeline.stages.encoding (shared across processes in a
multi-process run), and scores with retrieval_metrics; its means
are what InformationRetrievalEvaluator reports, and the per-query scores let the
report put intervals on them. Dev evaluation during training keeps the evaluator.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import parallel, progress
from pipeline.names import MODEL_DIR
from pipeline.stages import encoding, models, split, test_sets
from pipeline.stages.retrieval_metrics import METRICS, PerQueryScores, retrieval_scores
from pipeline.stages.stage import Context, Stage
from pipeline.stages.test_sets import RetrievalSet

VERSION = "3"  # 3: batches formed by pipeline.stages.encoding
PER_QUERY = "per_query.json"
# The base model's test scores, per (test set, model): every run on them reuses one scoring.
BASE = Stage("base_eval", VERSION,
             config=lambda cfg: {"test_distractors": cfg.eval.test_distractors, "seed": cfg.split.seed,
                                 "test": test_sets.file_fingerprint(cfg.eval.test) if cfg.eval.test else None,
                                 "max_seq_length": cfg.model.max_seq_length, "query_prompt": cfg.eval.query_prompt,
                                 "corpus_prompt": cfg.eval.corpus_prompt},
             upstream=(split.STAGE,), fingerprint=models.identity, collective=True)


def distractors(train_ds, n: int, seed: int) -> list[str]:
    """Up to n train positives, a seeded sample so every model sees the same corpus."""
    positives = sorted(set(train_ds["positive"]))
    random.Random(seed).shuffle(positives)
    return positives[:n]


def _evaluator_with_progress():
    """InformationRetrievalEvaluator encoding through encoding.encode, so evaluations show progress
    (we set no prompt names and no truncation, so only the prompt text is passed on). The trainer
    runs it on process 0 only, and sentence-transformers shares its model.encode calls across the
    processes itself: here each of them is a local encode."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    class WithProgress(InformationRetrievalEvaluator):
        def embed_inputs(self, model, sentences, encode_fn_name=None, prompt_name=None, prompt=None, **kwargs):
            import torch

            what = {"query": "queries", "document": "corpus"}.get(encode_fn_name, "texts")
            vectors = encoding.encode(model, list(sentences), self.batch_size, query=encode_fn_name == "query",
                                      prompt=prompt, desc=f"{self.name} eval: {what}", shared=False)
            return torch.from_numpy(vectors)

    return WithProgress


def ir_evaluator(ds, extra_corpus: list[str], name: str, batch_size: int,
                 query_prompt: str | None = None, corpus_prompt: str | None = None,
                 max_corpus: int | None = None):
    """InformationRetrievalEvaluator: each anchor's own positive is its one relevant document.

    With max_corpus the corpus keeps its first max_corpus documents (the split's positives come
    first) and queries whose positive was cut are dropped, so evaluation cost is bounded.
    """
    corpus: dict[str, str] = {}
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


def dev_setup(eval_cfg, splits: dict, seed: int) -> DevSetup:
    """eval.kind=ir: dev queries against dev positives (+ distractors from the source's own train
    positives, capped at eval.dev_max_corpus); eval.kind=loss: the dev split for the loss;
    eval.cadence=none: nothing. `splits`: each source's; with several, every source is evaluated
    on its own (dev_<source>: the trainer logs dev/<source>/*, train_report their macro average)."""
    if eval_cfg.cadence == "none":
        return DevSetup()
    if eval_cfg.kind == "loss":
        if len(splits) == 1:
            (part,) = splits.values()
            return DevSetup(loss_data=part["dev"], sizes={"eval/dev_queries": len(part["dev"])})
        import datasets

        return DevSetup(loss_data=datasets.DatasetDict({name: part["dev"] for name, part in splits.items()}),
                        sizes={"eval/dev_queries": sum(len(part["dev"]) for part in splits.values())})
    evaluators = {name: ir_evaluator(part["dev"], distractors(part["train"], eval_cfg.dev_distractors, seed),
                                     "dev" if len(splits) == 1 else f"dev_{name}", eval_cfg.batch_size,
                                     eval_cfg.query_prompt, eval_cfg.corpus_prompt, eval_cfg.dev_max_corpus)
                  for name, part in splits.items()}
    sizes = {"eval/dev_queries": sum(len(e.queries) for e in evaluators.values()),
             "eval/dev_corpus": sum(len(e.corpus) for e in evaluators.values())}
    if len(evaluators) == 1:
        return DevSetup(evaluator=next(iter(evaluators.values())), sizes=sizes)
    from sentence_transformers.base.evaluation import SequentialEvaluator

    return DevSetup(evaluator=SequentialEvaluator(list(evaluators.values()),
                                                  main_score_function=lambda scores: sum(scores) / len(scores)),
                    sizes=sizes)


def build_test_set(eval_cfg, splits, seed: int) -> RetrievalSet:
    """eval.test (a BEIR folder as it is; a pairs file plus distractors), else the split's test
    rows plus distractors: `eval.test_distractors` train positives, sampled with the split's seed."""
    extra = distractors(splits["train"], eval_cfg.test_distractors, seed)
    if eval_cfg.test:
        return test_sets.load(eval_cfg.test, distractors=extra)
    return test_sets.from_pairs(zip(splits["test"]["anchor"], splits["test"]["positive"]), extra)


def held_out(parts: dict[str, Context], splits: dict) -> dict[str, RetrievalSet]:
    """Each source's test set (build_test_set), recorded as its test input, with what it shares
    with its own training data (split/leaked_*) and, in a run of several sources, with the others'
    (split/<source>/leaked_across_sources: test queries and relevant texts that are another
    source's training texts, e.g. the same English anchor in two language sources)."""
    tests = {}
    for name, part in parts.items():
        test = tests[name] = build_test_set(part.cfg.eval, splits[name], part.cfg.split.seed)
        part.add_input("test", test.as_rows(), test.fingerprint())
        part.add(test_sets.leaks(test, splits[name]["train"], splits[name]["dev"]))
        if len(parts) > 1:
            others = {text for other in parts if other != name for column in ("anchor", "positive")
                      for text in splits[other]["train"][column]}
            part.add({"split/leaked_across_sources": test_sets.shared_texts(test, others)})
    return tests


def base(ctx: Context, model, test: RetrievalSet) -> dict[str, float]:
    """The base model's test metrics (base/*), scored before training changes it; cached."""
    cfg = ctx.cfg.eval
    def build(out: Path) -> None:
        run(model, test, cfg.batch_size, out, cfg.query_prompt, cfg.corpus_prompt, "base eval")

    entry, seconds = ctx.cached(BASE, build)
    scores = json.loads((entry.path / "metrics.json").read_text())
    ctx.add({"time/base_eval_s": seconds} | {f"base/{name}": scores[name] for name in METRICS})
    ctx.add_artifact(entry.path / PER_QUERY, "base")
    return scores


def tested(ctx: Context, parts: dict[str, Context], model, tests: dict[str, RetrievalSet],
           bases: dict[str, dict[str, float]]) -> None:
    """The test stage: the fine-tuned model's metrics (test/*) and gains over the base (gain/*) on
    each source's test set; in a run of several sources those are per source (test/de/ndcg_at_10)
    and test/*, base/* and gain/* are their macro averages (each source counts the same, however
    many queries it has: the run's figure), and test/per_query.json holds every source's queries
    (as <source>/<query id>) for the report."""
    start = time.perf_counter()
    means, scored = {}, {}
    with progress.stage("test"):
        for name, part in parts.items():
            cfg = part.cfg.eval
            scored[name] = score(model, tests[name], cfg.batch_size, cfg.query_prompt, cfg.corpus_prompt,
                                 "test" if len(parts) == 1 else f"test ({name})")
            means[name] = scored[name].means()
            part.add({f"test/{metric}": means[name][metric] for metric in METRICS}
                     | {f"gain/{metric}": means[name][metric] - bases[name][metric] for metric in METRICS}
                     | {"test/corpus_size": len(tests[name].corpus), "test/queries": len(tests[name].queries)})
    out = ctx.result.run_dir / "test"
    if parallel.is_main():
        out.mkdir(exist_ok=True)
        if len(parts) == 1:
            (name,) = parts
            save(scored[name], tests[name], out)
        else:
            for name in parts:
                (out / name).mkdir(exist_ok=True)
                save(scored[name], tests[name], out / name)
                parts[name].add_artifact(out / name / PER_QUERY, "test")
            _save_together(scored, tests, out)
    ctx.add_artifact(out / PER_QUERY, "test")
    seconds = time.perf_counter() - start
    base_s = sum(ctx.result.metrics[part.named("time/base_eval_s")] for part in parts.values())
    figures = {"time/test_s": seconds, "time/eval_s": seconds + base_s}
    if len(parts) > 1:
        for metric in METRICS:
            test = sum(means[name][metric] for name in parts) / len(parts)
            base_mean = sum(bases[name][metric] for name in parts) / len(parts)
            figures |= {f"test/{metric}": test, f"base/{metric}": base_mean, f"gain/{metric}": test - base_mean}
        figures |= {"test/queries": sum(len(test.queries) for test in tests.values()), "data/sources": len(parts)}
    ctx.add(figures, {MODEL_DIR: str(ctx.result.model_dir)})


def _save_together(scored: dict[str, PerQueryScores], tests: dict[str, RetrievalSet], out: Path) -> None:
    """Every source's per-query scores in one per_query.json: query ids <source>/<id>, and a test-set
    fingerprint of every source's."""
    together = {f"{name}/{qid}": values for name, scores in scored.items() for qid, values in scores.table().items()}
    fingerprint = hashlib.sha256("|".join(f"{name}={tests[name].fingerprint()}" for name in scored).encode())
    (out / PER_QUERY).write_text(json.dumps({"test_set": fingerprint.hexdigest()[:16], "sources": list(scored),
                                             "queries": together}))


def score(model, test: RetrievalSet, batch_size: int = 32, query_prompt: str | None = None,
          corpus_prompt: str | None = None, desc: str = "test") -> PerQueryScores:
    """Each test query's metrics for `model`; progress is named after `desc`."""
    queries = encoding.encode(model, list(test.queries.values()), batch_size, query=True, prompt=query_prompt,
                              desc=f"{desc}: queries")
    corpus = encoding.encode(model, list(test.corpus.values()), batch_size, query=False, prompt=corpus_prompt,
                             desc=f"{desc}: corpus")
    return retrieval_scores(queries, corpus, list(test.queries), list(test.corpus), test.relevant)


def save(scores: PerQueryScores, test: RetrievalSet, out_dir: Path) -> dict[str, float]:
    """Write metrics.json (means, sizes) and per_query.json into out_dir; return the metrics."""
    metrics = scores.means() | {"corpus_size": len(test.corpus), "queries": len(test.queries)}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out_dir / PER_QUERY).write_text(json.dumps({"test_set": test.fingerprint(), "queries": scores.table()}))
    return metrics


def run(model, test: RetrievalSet, batch_size: int, out_dir: Path, query_prompt: str | None = None,
        corpus_prompt: str | None = None, desc: str = "test") -> dict[str, float]:
    """Score `model` on `test`; write metrics.json and per_query.json, return the means."""
    return save(score(model, test, batch_size, query_prompt, corpus_prompt, desc), test, out_dir)
