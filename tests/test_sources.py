"""Several data sets in one run (data=multi, data=translations): each source is split, mined and
tested on its own, every training batch comes from one source, and the run's figure is the
macro average of the sources'. Real tiny runs of the static model, in-process through the driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import compose, stage_keys, write_jsonl
from pipeline import driver
from pipeline.app import check
from pipeline.result import RunResult
from pipeline.stages.stage import Context
from pipeline.stages.translations import harvest as translations

SMALL = ["model=static", "train.batch_size=16", "train.max_steps=6", "train.logging_steps=2", "eval=final",
         "eval.test_distractors=100", "eval.dev_distractors=50", "mlflow.log_model=false"]
NAMES = ("code", "de", "fr")


class Inputs:
    """A Sink that keeps the datasets a run logs (the recorder's own tests cover MLflow)."""

    def __init__(self):
        self.inputs: list[tuple[str, str | None]] = []

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def set_tags(self, tags) -> None:
        pass

    def log_input(self, context, rows, digest, data=None, source=None) -> None:
        self.inputs.append((context, source))


def _sources(tmp: Path) -> list[str]:
    """Three sources of three kinds: docstrings, a translations language, and a file (French)."""
    french = write_jsonl(tmp / "fr.jsonl", translations("fr", ["trac"], 2)[:300])
    return ["data=multi", "+data.sources.code={source:docstrings,max_rows:300}",
            "+data.sources.de={source:translations,languages:[de],catalogs:[trac],max_rows:300}",
            f"+data.sources.fr={{source:files,path:'{french}'}}"]


@pytest.fixture(scope="module")
def multi(tmp_path_factory, shared_cache):
    """(config, result, sink, Context) of one finished three-source run with k=2."""
    tmp = tmp_path_factory.mktemp("multi")
    cfg = compose([*SMALL, *_sources(tmp), "k=2", f"paths.cache_dir={shared_cache}", f"paths.run_dir={tmp / 'run'}"])
    sink = Inputs()
    result = RunResult(tmp / "run", sink)
    hardware = check(cfg)
    driver.run(cfg, hardware, result)
    return cfg, result, sink, Context(cfg, hardware, RunResult(tmp / "prep"))


def test_each_source_is_tested_on_its_own_and_the_run_figure_is_their_macro_average(multi):
    _, result, _, _ = multi
    m = result.metrics
    for metric in ("ndcg_at_10", "mrr_at_10"):
        each = [m[f"test/{name}/{metric}"] for name in NAMES]
        assert m[f"test/{metric}"] == pytest.approx(sum(each) / 3)
        assert m[f"gain/{metric}"] == pytest.approx(m[f"test/{metric}"] - m[f"base/{metric}"])
    assert all(m[f"split/{name}/test_rows"] > 0 and m[f"split/{name}/train_rows"] > 0 for name in NAMES)
    per_query = json.loads((result.run_dir / "test" / "per_query.json").read_text())
    assert sorted(per_query["sources"]) == sorted(NAMES)
    assert {qid.split("/")[0] for qid in per_query["queries"]} == set(NAMES)
    assert sum(len(json.loads((result.run_dir / "test" / name / "per_query.json").read_text())["queries"])
               for name in NAMES) == len(per_query["queries"]) == m["test/queries"]


def test_every_source_logs_its_own_train_dev_and_test_inputs(multi):
    _, _, sink, _ = multi
    assert sorted(sink.inputs) == sorted((part, name) for part in ("train", "dev", "test") for name in NAMES)


def test_negatives_are_mined_within_their_own_source(multi):
    _, _, _, ctx = multi
    splits, _, trainings = driver.prepare(ctx)
    for name, training in trainings.items():
        negatives = {text for k in (1, 2) for text in training.rows[f"negative_{k}"]}
        assert negatives <= set(splits[name]["train"]["positive"]), name


@pytest.mark.parametrize("sampler", ["proportional", "round_robin"])
def test_no_training_batch_mixes_sources(multi, sampler, tmp_path):
    """The trainer's own dataloader: each batch's indices lie within one source's rows."""
    from omegaconf import open_dict

    from pipeline.stages.train import trainer_for, trainer_sets

    cfg, _, _, ctx = multi
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.train.multi_dataset_sampler = sampler
    _, model, trainings = driver.prepare(ctx)
    trainer, _ = trainer_for(cfg, ctx.hardware, model, *trainer_sets(trainings), tmp_path)
    loader = trainer.get_train_dataloader()
    ends = loader.dataset.cumulative_sizes
    starts = [0, *ends[:-1]]
    drawn = [next(n for n, end in enumerate(ends) if batch[0] < end) for batch in loader.batch_sampler]
    for batch, n in zip(loader.batch_sampler, drawn):
        assert all(starts[n] <= i < ends[n] for i in batch) and len(batch) <= cfg.train.batch_size
    assert set(drawn) == {0, 1, 2}
    assert sum(len(batch) == cfg.train.batch_size for batch in loader.batch_sampler) > len(drawn) / 2


def test_a_run_of_one_source_is_the_run_of_that_source(tmp_path):
    """data=multi with one docstrings source shares every cache entry with data=docstrings."""
    plain = compose(["model=static", "k=2"])
    multi = compose(["model=static", "k=2", "data=multi", "+data.sources.docstrings={source:docstrings}"])
    (part,) = Context(multi, None, RunResult(tmp_path)).sources().values()
    assert stage_keys(part.cfg) == stage_keys(plain)


def test_translations_give_one_source_per_language(tmp_path):
    cfg = compose(["model=static", "data=translations", "data.languages=[de,fr,es]"])
    parts = Context(cfg, None, RunResult(tmp_path)).sources()
    assert list(parts) == ["de", "fr", "es"]
    assert [list(p.cfg.data.languages) for p in parts.values()] == [["de"], ["fr"], ["es"]]
    assert parts["de"].named("test/ndcg_at_10") == "test/de/ndcg_at_10"


def test_cache_keys_are_those_before_sources_existed(tmp_path, monkeypatch):
    """Golden keys, computed by the code before several sources (and the driver) existed: entries
    users have built stay valid. (A new model package in requirements.lock changes them.)"""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairs.jsonl").write_text(
        '{"anchor": "json.dumps", "positive": "Serialize obj to a JSON formatted str."}\n'
        '{"anchor": "os.path.join", "positive": "Join two or more pathname components."}\n')
    files = ["k=8", "data=files", "data.path=pairs.jsonl"]
    assert stage_keys(compose(["model=static", *files])) == {
        "split": "cf3435435845d924", "embed": "05219fb715e01c44", "mine": "e2c6403d6c884c76",
        "base_eval": "a1a785e484a2b606"}
    assert stage_keys(compose(files)) == {
        "split": "cf3435435845d924", "embed": "a87083cc5257469a", "mine": "04eace314cea0b4b",
        "base_eval": "3b68ba421acfd747"}
