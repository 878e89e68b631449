"""Everything a run needs before it trains, built the same way for plan mode and real runs.

`prepare` splits the data, loads the model and makes the training set: mined
negatives for k > 0 (plan mode takes a cached ranking if there is one, else
stand-in negatives, rather than paying for mining), and for negatives from a
memory bank the corpus, its first vectors and the rows with negatives as ids. Cached
stages are timed, shown as they start and end, and their keys and hits recorded on the
run's result as they complete, as are the datasets the run trains on (train, dev) with
their digests.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from omegaconf import DictConfig, OmegaConf

from pipeline import progress
from pipeline.losses import negatives_mode
from pipeline.run import models
from pipeline.run.cache import Entry, StageCache, stage_key
from pipeline.run.result import RunResult
from pipeline.stages import embed, evaluate, mine, split, sources, test_sets
from pipeline.tracking.names import cache_tags


def _resolved(node: DictConfig) -> dict:
    return OmegaConf.to_container(node, resolve=True)


def stage_keys(cfg: DictConfig) -> dict[str, str]:
    """Cache key of each cached stage this config runs (embed and mine only when k > 0)."""
    model_fp = models.model_fingerprint(cfg.model)
    fixed_test = cfg.eval.test is not None
    keys = {"split": stage_key("split", split.VERSION,
                               {"data": _resolved(cfg.data), "split": _resolved(cfg.split),
                                "fixed_test": fixed_test},
                               fingerprint=sources.fingerprint(cfg.data))}
    if cfg.k > 0:
        # Embeddings per (model, data); the ranking per miner setting, without k: one serves every k.
        keys["embed"] = stage_key("embed", embed.VERSION, {"max_seq_length": cfg.model.max_seq_length,
                                  "batch_size": cfg.miner.batch_size}, [keys["split"]], model_fp)
        keys["mine"] = stage_key("mine", mine.VERSION, mine.ranking_config(cfg.miner), [keys["embed"]])
    keys["base_eval"] = stage_key("base_eval", evaluate.VERSION,
                                  {"test_distractors": cfg.eval.test_distractors, "seed": cfg.split.seed,
                                   "test": test_sets.file_fingerprint(cfg.eval.test) if fixed_test else None,
                                   "max_seq_length": cfg.model.max_seq_length,
                                   "query_prompt": cfg.eval.query_prompt,
                                   "corpus_prompt": cfg.eval.corpus_prompt},
                                  [keys["split"]], model_fp)
    return keys


def input_digests(cfg: DictConfig, keys: dict[str, str]) -> dict[str, str]:
    """A digest per dataset the run trains on, from the cache keys that made it: equal digests,
    equal rows, however many (MLflow's own digest reads only the first 10,000 rows). The train
    set is the split's train part, or with k > 0 the mined rows cut for this k. (The test set's
    digest is its own content hash, RetrievalSet.fingerprint.)"""
    digests = {part: stage_key(part, split.VERSION, {}, [keys["split"]]) for part in ("train", "dev")}
    if cfg.k > 0:
        cut = {"k": cfg.k, "sampling_strategy": cfg.miner.sampling_strategy, "on_short": cfg.miner.on_short,
               "order": cfg.miner.order, "seed": cfg.seed}
        digests["train"] = stage_key("train", mine.VERSION, cut, [keys["mine"]])
    return digests


class TimedCache:
    """Stage-cache lookups that record, on the run's result, each entry's key, hit and build time."""

    def __init__(self, cache: StageCache, result: RunResult):
        self.cache = cache
        self.result = result

    def get(self, stage: str, key: str, build: Callable[[Path], None]) -> tuple[Entry, float]:
        """(the entry, seconds this run spent getting it: a hit costs a lookup, a miss the build)."""
        with progress.stage(stage) as shown:
            start = time.perf_counter()
            entry = self.cache.get_or_build(stage, key, build)
            seconds = time.perf_counter() - start
            shown.note = "cache hit" if entry.hit else "cache miss: built"
        self.result.add({f"time/{stage}_build_s": entry.build_s}, cache_tags(stage, entry.key, entry.hit))
        return entry, seconds


def stand_in_negatives(train_ds, k: int, seed: int):
    """(anchor, positive, negative_1..k) with negatives drawn at random from other rows' positives.

    Plan mode and the benchmarks use these when no mined set is cached: the miner picks its
    negatives from the same passages, so the texts and tokens per step match a mined run's."""
    import datasets

    positives = train_ds["positive"]
    rng = random.Random(seed)
    # Sampling from n - 1 slots and shifting those at or past the row's own index skips its positive.
    picks = [[positives[j + (j >= row)] for j in rng.sample(range(len(positives) - 1), k)]
             for row in range(len(positives))]
    negatives = {f"negative_{i + 1}": [pick[i] for pick in picks] for i in range(k)}
    return datasets.Dataset.from_dict({"anchor": train_ds["anchor"], "positive": positives} | negatives)


def _embedded(cfg: DictConfig, cache: TimedCache, keys: dict[str, str], train_ds, model) -> tuple[Entry, float]:
    """(the embed entry: the train split's queries and corpus, encoded once per (model, data);
    seconds spent getting it)."""
    return cache.get("embed", keys["embed"], lambda out: embed.run(model, train_ds, cfg.miner.batch_size, out))


def mine_for_k(cfg: DictConfig, cache: TimedCache, keys: dict[str, str], train_ds, model):
    """(the k-negative training set, mine/* metrics incl. time/mine_s) from the cached ranking.

    Another miner setting re-ranks the cached embeddings without re-encoding."""
    def build(out: Path) -> None:
        embedded, embed_s = _embedded(cfg, cache, keys, train_ds, model)
        cache.result.add({"time/embed_s": embed_s})
        mine.rank(cfg.miner, *embed.load(embedded.path), train_ds, model, out)

    entry, lookup_s = cache.get("mine", keys["mine"], build)
    start = time.perf_counter()
    mined, stats = mine.for_k(entry.path, train_ds, cfg.k, cfg.miner, cfg.seed)
    cut_s = time.perf_counter() - start
    return mined, stats | {"time/mine_cut_s": cut_s, "time/mine_s": lookup_s + cut_s}


@dataclass
class Bank:
    """What negatives from a memory bank (loss.negatives=bank) start from: the corpus (the train
    split's unique positives), its vectors, and the training set with negatives as corpus ids."""

    corpus: list[str]
    vectors: object  # np.ndarray (corpus, dim)
    train_ds: object  # datasets.Dataset: anchor, positive, label (k corpus ids)


def memory_bank(cfg: DictConfig, cache: TimedCache, keys: dict[str, str], split_train, train_ds, model,
                encode: bool) -> Bank:
    """The bank's start: the embed stage's corpus vectors (cached by mining, so step 0 encodes
    nothing), or with encode=False (plan mode, which never encodes) zeros: a step's time does not
    depend on the vectors' values."""
    corpus = embed.texts(split_train)[1]
    if encode:
        embedded, seconds = _embedded(cfg, cache, keys, split_train, model)
        cache.result.add({"time/bank_init_s": seconds})
        vectors = embed.load(embedded.path)[1]
    else:
        vectors = np.zeros((len(corpus), model.get_embedding_dimension()), dtype=np.float32)
    return Bank(corpus, vectors, mine.with_corpus_ids(train_ds, corpus))


@dataclass
class Prepared:
    """A run's inputs: cache keys, the split, the base model and the training set."""

    keys: dict[str, str]
    cache: TimedCache
    splits: object  # datasets.DatasetDict: train, dev, test
    model: object  # SentenceTransformer
    train_ds: object  # datasets.Dataset: anchor, positive[, negative_1..k] (texts, in every mode)
    negatives: str  # "mined", "stand-in" (plan mode, nothing cached) or "no" (k = 0)
    bank: Bank | None = None  # loss.negatives=bank with k > 0: what the trainer trains on instead


def prepare(cfg: DictConfig, hardware, result: RunResult, mine_negatives: bool = True, model=None) -> Prepared:
    """Split (cached), load the model (unless given), and make the training set: mined negatives,
    or with mine_negatives=False (plan mode) a cached ranking if there is one, else stand-in
    negatives; with loss.negatives=bank (and k > 0) also the memory bank's start (memory_bank)."""
    cache = TimedCache(StageCache(cfg.paths.cache_dir), result)
    keys = stage_keys(cfg)
    split_entry, split_s = cache.get("split", keys["split"],
                                     lambda out: split.run(cfg.data, cfg.split, cfg.eval.test is None, out))
    result.add(json.loads((split_entry.path / "stats.json").read_text()) | {"time/split_s": split_s})
    splits = split.load(split_entry.path)
    digests = input_digests(cfg, keys)
    result.add_input("dev", splits["dev"], digests["dev"])
    if model is None:
        model = models.load_model(cfg.model, device=hardware.model_device)
    train_ds, negatives = splits["train"], "no"
    if cfg.k > 0 and (mine_negatives or cache.cache.lookup("mine", keys["mine"])):
        train_ds, stats = mine_for_k(cfg, cache, keys, splits["train"], model)
        result.add(stats)
        result.add_input("train", train_ds, digests["train"])
        negatives = "mined"
    elif cfg.k > 0:
        train_ds, negatives = stand_in_negatives(splits["train"], cfg.k, cfg.seed), "stand-in"
    else:
        result.add({"time/mine_s": 0.0})
        result.add_input("train", train_ds, digests["train"])
    bank = None
    if negatives_mode(cfg) == "bank":
        bank = memory_bank(cfg, cache, keys, splits["train"], train_ds, model, encode=mine_negatives)
    return Prepared(keys, cache, splits, model, train_ds, negatives, bank)
