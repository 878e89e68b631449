"""Mine stage: ranked candidate negatives per training query, computed once for every k.

`rank` does what `sentence_transformers.util.mine_hard_negatives` does before it
picks `num_negatives`: corpus = the unique positives; search the top
range_max + (most positives of one query); optionally rescore with a
cross-encoder; remove each query's own positives; apply the absolute and
relative margins (against the query's lowest positive score) and the
max/min score bounds; re-rank; keep ranks range_min..range_max-1. None of that
depends on k, so one cached entry serves a whole k-sweep, and `for_k` cuts the
(anchor, positive, negative_1..k) training set for any k in seconds.

One difference: mine_hard_negatives rescores with a cross-encoder only when a
margin or score bound is set; here a configured cross-encoder always rescores.

k = 0 needs no stage at all: training then uses plain pairs and in-batch negatives.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from pipeline import parallel
from pipeline.cache import stage_key
from pipeline.errors import PipelineError
from pipeline.losses import negatives_mode
from pipeline.progress import in_chunks
from pipeline.stages import embed, split
from pipeline.stages.stage import Context, Stage

VERSION = "2"
# Miner settings the ranking depends on; k, sampling_strategy, on_short and order only change the cut.
RANKING_KEYS = ("range_min", "range_max", "max_score", "min_score", "absolute_margin",
                "relative_margin", "use_faiss", "cross_encoder")
# Queries scored against the whole corpus at once (mine_hard_negatives' faiss_batch_size).
_QUERY_CHUNK = 16384
# Batches of pairs the cross-encoder scores between progress updates.
_RESCORE_BATCHES = 4
# The ranking per miner setting, without k: one serves every k.
STAGE = Stage("mine", VERSION, config=lambda cfg: ranking_config(cfg.miner), upstream=(embed.STAGE,))


@dataclass
class Bank:
    """What negatives from a memory bank (loss.negatives=bank) start from: the corpus (the train
    split's unique positives), its vectors, and the training set with negatives as corpus ids."""

    corpus: list[str]
    vectors: np.ndarray  # (corpus, dim)
    train_ds: Any  # datasets.Dataset: anchor, positive, label (k corpus ids[, the anchor's positives])


@dataclass
class TrainingSet:
    """What the train stage trains on: rows of texts (anchor, positive[, negative_1..k]), where their
    negatives came from ("mined", "no" for k = 0, "stand-in" in plan mode with nothing cached),
    and in bank mode the memory bank's start."""

    rows: Any  # datasets.Dataset
    negatives: str
    bank: Bank | None = None


def run(ctx: Context, train_split, model) -> TrainingSet:
    """The mine stage: the train split's pairs with k hard negatives each, cut from the cached
    ranking (k = 0: the pairs as they are). Plan mode never mines: it takes a cached ranking if
    there is one, else stand-in negatives (stand_in_negatives). In bank mode the embed stage's
    corpus vectors start the bank (plan mode: zeros, a step's time does not depend on them)."""
    cfg = ctx.cfg
    if cfg.k == 0:
        ctx.add({"time/mine_s": 0.0})
        ctx.add_input("train", train_split, split.part_digest(ctx, "train"))
        rows, negatives = train_split, "no"
    elif ctx.plan and not ctx.is_cached(STAGE):
        rows, negatives = stand_in_negatives(train_split, cfg.k, cfg.seed), "stand-in"
    else:
        rows, negatives = _mined(ctx, train_split, model), "mined"
    bank = None
    if negatives_mode(cfg) == "bank":
        corpus = embed.texts(train_split)[1]
        if ctx.plan:
            vectors = np.zeros((len(corpus), model.get_embedding_dimension()), dtype=np.float32)
        else:
            embedded, seconds = embed.run(ctx, model, train_split)
            ctx.add({"time/bank_init_s": seconds})
            vectors = embed.load(embedded.path)[1]
        online = cfg.loss.bank_mining == "online"
        bank = Bank(corpus, vectors, with_corpus_ids(rows, corpus, train_split if online else None))
    return TrainingSet(rows, negatives, bank)


def _mined(ctx: Context, train_split, model):
    """The k-negative training set from the cached ranking (built, after the embed stage, if absent:
    another miner setting re-ranks the cached embeddings without re-encoding); mine/* on the result."""
    cfg, embed_s, embedded = ctx.cfg, 0.0, None
    if not parallel.broadcast(ctx.is_cached(STAGE) if parallel.is_main() else None):
        embedded, embed_s = embed.run(ctx, model, train_split)  # every process encodes its share
        ctx.add({"time/embed_s": embed_s})

    def build(out: Path) -> None:
        if embedded is None:
            raise PipelineError(f"the mine entry {ctx.key(STAGE)} vanished from {cfg.paths.cache_dir} while this "
                                "run read it (a cache cleaned meanwhile?): run again.")
        rank(cfg.miner, *embed.load(embedded.path), train_split, model, out)

    entry, lookup_s = ctx.cached(STAGE, build)
    start = time.perf_counter()
    mined, stats = for_k(entry.path, train_split, cfg.k, cfg.miner, cfg.seed)
    cut_s = time.perf_counter() - start
    ctx.add(stats | {"time/mine_cut_s": cut_s, "time/mine_s": embed_s + lookup_s + cut_s})
    ctx.add_input("train", mined, train_digest(ctx))
    return mined


def train_digest(ctx: Context) -> str:
    """The digest of the k-negative training set: the ranking's key and how it is cut for k."""
    miner = ctx.cfg.miner
    cut = {"k": ctx.cfg.k, "sampling_strategy": miner.sampling_strategy, "on_short": miner.on_short,
           "order": miner.order, "seed": ctx.cfg.seed}
    return stage_key("train", VERSION, cut, [ctx.key(STAGE)])


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


def ranking_config(miner_cfg: DictConfig) -> dict:
    """The settings a candidates entry depends on, for its cache key (a cross-encoder by its files)."""
    config = {key: miner_cfg[key] for key in RANKING_KEYS}
    if miner_cfg.cross_encoder:
        root = Path(miner_cfg.cross_encoder).resolve()
        config["cross_encoder"] = [str(root)] + sorted(
            f"{p.relative_to(root)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
            for p in root.rglob("*") if p.is_file())
    return config


def _positives(train_ds, queries: list[str], corpus: list[str]) -> list[list[int]]:
    """Corpus ids of each unique query's positives, first-seen order."""
    query_id = {text: i for i, text in enumerate(queries)}
    corpus_id = {text: i for i, text in enumerate(corpus)}
    positives: list[list[int]] = [[] for _ in queries]
    pairs = train_ds.select_columns(["anchor", "positive"]).to_dict()
    for anchor, positive in zip(pairs["anchor"], pairs["positive"]):
        ids = positives[query_id[anchor]]
        if corpus_id[positive] not in ids:
            ids.append(corpus_id[positive])
    return positives


def _search(model, query_emb: np.ndarray, corpus_emb: np.ndarray, depth: int,
            use_faiss: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Top `depth` (scores, corpus ids) per query, padded with (-inf, -1) past the corpus size."""
    if use_faiss:
        import faiss

        index = faiss.IndexFlatIP(corpus_emb.shape[1])
        index.add(corpus_emb)
        scores, ids = (torch.from_numpy(a) for a in index.search(query_emb, depth))
    else:
        corpus_t = torch.as_tensor(corpus_emb)
        width = min(depth, len(corpus_emb))
        parts = [torch.topk(model.similarity(query_emb[i:i + _QUERY_CHUNK], corpus_t).cpu(), k=width, dim=1)
                 for i in range(0, len(query_emb), _QUERY_CHUNK)]
        scores = torch.cat([part.values for part in parts])
        ids = torch.cat([part.indices for part in parts])
        pad = depth - width
        scores = torch.cat([scores, scores.new_full((len(scores), pad), -float("inf"))], dim=1)
        ids = torch.cat([ids, ids.new_full((len(ids), pad), -1)], dim=1)
    scores[ids == -1] = -float("inf")
    return scores, ids


def _rescore(path: str, device, queries: list[str], corpus: list[str], scores: torch.Tensor,
             ids: torch.Tensor, row_query: list[int], row_positive: list[int],
             batch_size: int) -> torch.Tensor:
    """Replace candidate scores in place with cross-encoder scores; return the positives' scores."""
    from sentence_transformers import CrossEncoder

    cross_encoder = CrossEncoder(path, device=str(device))
    found = ids != -1
    query_of = found.nonzero()[:, 0].tolist()
    pairs = [(queries[q], corpus[c]) for q, c in zip(query_of, ids[found].tolist())]
    options = {"batch_size": batch_size, "convert_to_tensor": True, "show_progress_bar": False}

    def predict(some: list, desc: str) -> torch.Tensor:
        if not some:
            return torch.empty(0)
        return torch.cat(in_chunks(lambda chunk: cross_encoder.predict(list(chunk), **options).float().cpu(),
                                   some, _RESCORE_BATCHES * batch_size, desc, "pair"))

    scores[found] = predict(pairs, "rescore candidates")
    return predict([(queries[q], corpus[p]) for q, p in zip(row_query, row_positive)], "rescore positives")


def _remove(scores: torch.Tensor, drop: torch.Tensor) -> int:
    """Disqualify candidates in place; how many still-valid ones that removed."""
    drop = drop & torch.isfinite(scores)
    scores[drop] = -float("inf")
    return int(drop.sum())


def rank(miner_cfg: DictConfig, query_emb: np.ndarray, corpus_emb: np.ndarray, train_ds, model,
         out_dir: Path) -> None:
    """Write candidates.npz (ranked window, scores, searched ids, positives) and stats.json."""
    queries, corpus = embed.texts(train_ds)
    positives = _positives(train_ds, queries, corpus)
    row_query = [q for q, ids in enumerate(positives) for _ in ids]
    row_positive = [p for ids in positives for p in ids]
    max_positives = max(len(ids) for ids in positives)
    scores, ids = _search(model, query_emb, corpus_emb, miner_cfg.range_max + max_positives,
                          miner_cfg.use_faiss)
    searched = ids.clone()
    if miner_cfg.cross_encoder:
        positive_scores = _rescore(miner_cfg.cross_encoder, model.device, queries, corpus, scores, ids,
                                   row_query, row_positive, miner_cfg.batch_size)
    else:
        positive_scores = model.similarity_pairwise(torch.as_tensor(query_emb[row_query]),
                                                    torch.as_tensor(corpus_emb[row_positive])).cpu()

    own = np.full((len(queries), max_positives), -2)
    own[row_query, [i for ids_of_q in positives for i in range(len(ids_of_q))]] = row_positive
    scores[(ids[:, :, None] == torch.from_numpy(own)[:, None, :]).any(-1)] = -float("inf")

    # Margins count against the query's hardest (lowest-scoring) positive, as in mine_hard_negatives.
    lowest = torch.full((len(queries),), float("inf")).scatter_reduce(
        0, torch.tensor(row_query), positive_scores, "amin")[:, None]
    by_margin = by_score = 0
    if miner_cfg.absolute_margin is not None:
        by_margin += _remove(scores, scores + miner_cfg.absolute_margin > lowest)
    if miner_cfg.relative_margin is not None:
        by_margin += _remove(scores, scores > lowest - lowest.abs() * miner_cfg.relative_margin)
    if miner_cfg.max_score is not None:
        by_score += _remove(scores, scores > miner_cfg.max_score)
    if miner_cfg.min_score is not None:
        by_score += _remove(scores, scores < miner_cfg.min_score)

    window_scores, local = torch.topk(scores, k=miner_cfg.range_max, dim=1)
    window = ids.gather(1, local)[:, miner_cfg.range_min:]
    window_scores = window_scores[:, miner_cfg.range_min:]
    window[~torch.isfinite(window_scores)] = -1
    np.savez(out_dir / "candidates.npz", window=window.numpy().astype(np.int32),
             window_scores=window_scores.numpy().astype(np.float32),
             searched=searched.numpy().astype(np.int32),
             row_query=np.array(row_query, dtype=np.int32),
             row_positive=np.array(row_positive, dtype=np.int32),
             positive_scores=positive_scores.numpy().astype(np.float32))
    stats = {"mine/queries": len(queries), "mine/corpus_size": len(corpus),
             "mine/candidates_per_query": float(torch.isfinite(window_scores).sum(1).float().mean()),
             "mine/removed_by_margin": by_margin, "mine/removed_by_score": by_score}
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=1))


def _picks(window: np.ndarray, n_valid: np.ndarray, k: int, strategy: str, seed: int) -> np.ndarray:
    """[queries, k] window positions to use, -1 past a query's valid candidates.

    "top" takes the first k; "random" a prefix of one permutation per (seed, query),
    so a query's k=8 draw is a subset of its k=16 draw whatever other queries do.
    """
    positions = np.full((len(window), k), -1)
    for q, n in enumerate(n_valid):
        if strategy == "top":
            chosen = np.arange(min(k, n))
        else:
            chosen = np.sort(np.random.default_rng([seed, q, 0]).permutation(n)[:k])
        positions[q, :len(chosen)] = chosen
    return positions


def _fill(negatives: np.ndarray, searched: np.ndarray, row_query: np.ndarray, row_positive: np.ndarray,
          corpus_size: int, seed: int) -> int:
    """Top short queries up in place with random corpus ids ranked below the searched depth
    (easy negatives, never a positive), a prefix of one permutation per (seed, query); how many."""
    filled = 0
    for q in np.flatnonzero((negatives == -1).any(1)):
        have = int((negatives[q] != -1).sum())
        own = row_positive[row_query == q]
        eligible = np.setdiff1d(np.arange(corpus_size), np.concatenate([searched[q], own]))
        extra = np.random.default_rng([seed, int(q), 1]).permutation(eligible)[:negatives.shape[1] - have]
        negatives[q, have:have + len(extra)] = extra
        filled += len(extra)
    return filled


def _ordered(negatives: np.ndarray, order: str, seed: int) -> np.ndarray:
    """Each row's k negatives in `order`: rank (as picked: hardest first, filled ones last),
    reversed, or shuffled by one permutation per (seed, query); which texts a row holds never changes."""
    if order == "rank":
        return negatives
    if order == "reversed":
        return negatives[:, ::-1].copy()
    return np.stack([row[np.random.default_rng([seed, q, 2]).permutation(len(row))]
                     for q, row in enumerate(negatives)])


def for_k(entry_dir: Path, train_ds, k: int, miner_cfg: DictConfig, seed: int):
    """(training set with columns anchor, positive, negative_1..k; its stats) from a candidates entry."""
    import datasets
    import pyarrow as pa

    arrays = dict(np.load(entry_dir / "candidates.npz"))
    window, window_scores = arrays["window"], arrays["window_scores"]
    row_query, row_positive = arrays["row_query"], arrays["row_positive"]
    queries, corpus = embed.texts(train_ds)
    positions = _picks(window, np.isfinite(window_scores).sum(1), k, miner_cfg.sampling_strategy, seed)
    taken = np.take_along_axis(window, np.maximum(positions, 0), 1)
    negatives = np.where(positions >= 0, taken, -1)
    scores = np.where(positions >= 0, np.take_along_axis(window_scores, np.maximum(positions, 0), 1), np.nan)
    short_queries = (negatives == -1).any(1)
    filled = 0
    if miner_cfg.on_short == "fill":
        filled = _fill(negatives, arrays["searched"], row_query, row_positive, len(corpus), seed)
    negatives = _ordered(negatives, miner_cfg.order, seed)
    keep = (negatives[row_query] != -1).all(1)
    if not keep.any():
        raise PipelineError(
            f"The training set is empty after mining: none of the {len(train_ds)} train queries has "
            f"k={k} hard negatives in ranks {miner_cfg.range_min}..{miner_cfg.range_max}. "
            "Lower k, raise miner.range_max, set miner.on_short=fill, or use more data.")
    kept_query, kept_negatives = row_query[keep], negatives[row_query[keep]]
    gaps = arrays["positive_scores"][keep][:, None] - scores[kept_query]

    corpus_arrow = pa.array(corpus)
    columns = {"anchor": pa.array(queries).take(kept_query),
               "positive": corpus_arrow.take(row_positive[keep]),
               **{f"negative_{i}": corpus_arrow.take(kept_negatives[:, i - 1]) for i in range(1, k + 1)}}
    fingerprint = f"{entry_dir.name}-{k}-{miner_cfg.sampling_strategy}-{miner_cfg.on_short}-{miner_cfg.order}-{seed}"
    mined = datasets.Dataset(datasets.table.InMemoryTable(pa.table(columns)), fingerprint=fingerprint)
    stats = json.loads((entry_dir / "stats.json").read_text()) | {
        "mine/rows_in": len(train_ds), "mine/rows_out": int(keep.sum()),
        "mine/rows_short": int(short_queries[row_query].sum()), "mine/negatives_filled": filled,
        "mine/score_gap_mean": float(np.nanmean(gaps)) if np.isfinite(gaps).any() else float("nan")}
    return mined, stats


def with_corpus_ids(mined, corpus: list[str], train_split=None):
    """The training set (anchor, positive, negative_1..k) with the negatives as one `label` column
    of k corpus ids instead of texts, for negatives from a memory bank: the trainer hands `label`
    to the loss, and every negative is a corpus text, so each has an id. With `train_split` (for
    online mining) each label also lists, after the k negatives, the corpus ids of every positive
    its anchor has in the split, padded with -1: those must never be picked as negatives."""
    import datasets

    ids = {text: i for i, text in enumerate(corpus)}
    negatives = [name for name in mined.column_names if name.startswith("negative_")]
    label = np.array([[ids[text] for text in mined[name]] for name in negatives], dtype=np.int64).T
    if train_split is not None:
        of_anchor: dict[str, list[int]] = {}
        for anchor, positive in zip(train_split["anchor"], train_split["positive"]):
            of_anchor.setdefault(anchor, []).append(ids[positive])
        widest = max(len(set(found)) for found in of_anchor.values())
        positives: np.ndarray = np.full((len(label), widest), -1, dtype=np.int64)
        for row, anchor in enumerate(mined["anchor"]):
            found = sorted(set(of_anchor[anchor]))
            positives[row, :len(found)] = found
        label = np.concatenate([label, positives], axis=1)
    return datasets.Dataset.from_dict({"anchor": mined["anchor"], "positive": mined["positive"],
                                       "label": label.tolist()})
