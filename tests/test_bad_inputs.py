"""What users get wrong: each case is refused with one paragraph naming the key, before any data,
model or store is touched, and echoes no secret. Every case runs in-process through what the job
checks first (compose, then app.check); a dozen run again through the real command line, where
each must exit 2 with that one paragraph (no traceback), leave no MLflow run RUNNING and write
no stage-cache entry. Sweep cases (-m) run on the command line only."""

import importlib.util
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import warm
from helpers import FAST, ROOT, Cli, compose, write_jsonl
from pipeline.app import check
from pipeline.errors import PipelineError

GROUPS = ["data", "split", "miner", "loss", "model", "train", "eval", "hardware", "mlflow"]
SECRET = "abcSECRET43"


def _files(tmp: Path, rows=None, name="pairs.jsonl", text=None, data: bytes | None = None) -> str:
    path = tmp / name
    if data is not None:
        path.write_bytes(data)
    elif text is not None:
        path.write_text(text)
    else:
        write_jsonl(path, rows)
    return str(path)


def _pairs(n: int) -> list[dict]:
    return [{"anchor": f"how do I do thing {i}", "positive": f"module.thing_{i}\nDoes thing {i}."}
            for i in range(n)]


def _not_utf8_at_row_200(tmp: Path) -> str:
    lines = [f'{{"anchor": "query {i}", "positive": "passage {i}"}}\n'.encode() for i in range(300)]
    lines[199] = b'{"anchor": "caf\xe9", "positive": "passage"}\n'
    return _files(tmp, data=b"".join(lines))


def _garbage_store(tmp: Path) -> str:
    (tmp / "store.db").write_text("this is not a database\n")
    return f"mlflow.tracking_uri=sqlite:///{tmp}/store.db"


# (id, overrides given the temp dir, words the message must contain); multirun cases start with "-m".
CASES = [
    ("k_negative", lambda t: ["k=-1"], ["k=-1", "0 to 64"]),
    ("k_too_large", lambda t: ["k=65"], ["k=65", "0 to 64"]),
    ("k_float", lambda t: ["k=8.5"], ["k=8.5", "integer"]),
    ("k_word", lambda t: ["k=eight"], ["k='eight'", "integer"]),
    *[(f"unknown_{g}_option", lambda t, g=g: [f"{g}=nope"], [f"Could not find '{g}/nope'"])
      for g in GROUPS],
    ("ratios_sum_0_9", lambda t: ["split.train=0.8"], ["sum to 0.9", "not 1"]),
    ("test_ratio_0", lambda t: ["split.test=0", "split.train=0.99"], ["split.test=0", "above 0"]),
    ("ratio_above_1", lambda t: ["split.train=1.5"], ["split.train=1.5", "between 0 and 1"]),
    ("max_test_0", lambda t: ["split.max_test=0"], ["split.max_test=0", "test stage needs data"]),
    ("data_file_missing", lambda t: ["data=files", f"data.path={t}/missing.jsonl"],
     ["data.path=", "no such file"]),
    ("data_path_is_a_directory", lambda t: ["data=files", f"data.path={t}"],
     ["data.path=", "is a directory, not a data file"]),
    ("data_anchor_column_is_the_positive_column", lambda t: ["data=files", "data.positive_column=anchor",
                                                             "data.path=" + _files(t, _pairs(50))],
     ["data.positive_column='anchor'", "data.anchor_column='anchor'", "its own answer"]),
    ("data_anchors_equal_their_positives", lambda t: ["data=files", "data.path=" + _files(
        t, [{"anchor": f"text {i}", "positive": f"text {i}"} for i in range(100)])],
     ["training pairs have an anchor equal to its positive", "1.0"]),
    ("data_path_not_given", lambda t: ["data=files"], ["data=files needs a file", "data.path="]),
    ("data_other_columns", lambda t: ["data=files", "data.path=" + _files(
        t, [{"question": "q", "answer": "a"}])],
     ["data.anchor_column='anchor'", "no such column", "['question', 'answer']"]),
    ("data_empty", lambda t: ["data=files", "data.path=" + _files(t, text="")], ["no rows", "empty"]),
    ("data_non_text_column", lambda t: ["data=files", "data.path=" + _files(
        t, [{"anchor": 3, "positive": "text"}])], ["data.anchor_column='anchor'", "must hold text", "line 1"]),
    ("data_unknown_format", lambda t: ["data=files", "data.path=" + _files(t, name="pairs.txt", text="a\tb\n")],
     ["data.path=", "unknown format", ".jsonl"]),
    ("data_not_utf8_at_row_200", lambda t: ["data=files", "data.path=" + _not_utf8_at_row_200(t)],
     ["data.path=", "line 200", "not UTF-8"]),
    ("data_malformed_line", lambda t: ["data=files", "data.path=" + _files(
        t, text='{"anchor": "a", "positive": "b"}\n{"anchor": "c", "positive"\n')],
     ["data.path=", "line 2 is not valid JSON", '"positive"']),
    ("data_line_not_an_object", lambda t: ["data=files", "data.path=" + _files(t, text='["a", "b"]\n')],
     ["data.path=", "line 1 is not a JSON object"]),
    ("csv_header_only", lambda t: ["data=files", "data.path=" + _files(
        t, name="pairs.csv", text="anchor,positive\n")], ["holds no rows", "only a header"]),
    ("data_max_rows_0", lambda t: ["data.max_rows=0"], ["data.max_rows=0", "at least 1 row"]),
    ("data_max_rows_negative", lambda t: ["data.max_rows=-5"], ["data.max_rows=-5", "at least 1 row"]),
    ("data_package_missing", lambda t: ["data.packages=[nope_pkg]"], ["data.packages", "'nope_pkg'"]),
    ("data_source_unknown", lambda t: ["data.source=web"], ["data.source='web'", "docstrings"]),
    ("group_column_missing", lambda t: ["split.group_column=nope"],
     ["split.group_column='nope'", "no such column"]),
    ("group_column_missing_in_file", lambda t: ["data=files", "split.group_column=nope", "data.path=" +
                                                _files(t, _pairs(5))],
     ["split.group_column='nope'", "['anchor', 'positive']"]),
    ("model_path_missing", lambda t: ["model=hub", f"model.id={t}/no-model"],
     ["model.id=", "no such model directory"]),
    ("hub_model_offline", lambda t: ["model=hub", "model.id=someone/not-cached-model"],
     ["HF_HUB_OFFLINE=1", "model=minilm or model=static"]),
    ("max_seq_length_beyond_the_chunk_budget", lambda t: ["model.max_seq_length=100000"],
     ["model.max_seq_length=100000", "at most loss.chunk_budget=1024", "Lower model.max_seq_length"]),
    ("max_seq_length_0", lambda t: ["model.max_seq_length=0"], ["model.max_seq_length=0", "at least 1"]),
    ("model_kind_unknown", lambda t: ["model.kind=onnx"], ["model.kind='onnx'", "package, static, hub"]),
    ("batch_size_beyond_the_training_split", lambda t: ["train.batch_size=100000"],
     ["train.batch_size=100000", "pairs of the training split"]),
    ("batch_size_1", lambda t: ["train.batch_size=1"], ["train.batch_size=1", "at least 2"]),
    ("zero_epochs", lambda t: ["train.max_steps=-1", "train.epochs=0"], ["train.epochs=0", "train.max_steps=-1"]),
    ("max_steps_0", lambda t: ["train.max_steps=0"], ["train.max_steps=0", "-1"]),
    ("learning_rate_negative", lambda t: ["train.learning_rate=-0.01"], ["train.learning_rate=-0.01", "above 0"]),
    ("learning_rate_word", lambda t: ["train.learning_rate=fast"], ["train.learning_rate", "fast"]),
    ("warmup_ratio_5", lambda t: ["train.warmup_ratio=5"], ["train.warmup_ratio=5", "below 1"]),
    ("logging_steps_0", lambda t: ["train.logging_steps=0"], ["train.logging_steps=0", "at least 1"]),
    ("batch_sampler_unknown", lambda t: ["train.batch_sampler=random"],
     ["train.batch_sampler='random'", "no_duplicates, no_duplicates_hashed, batch_sampler"]),
    ("directions_without_query_to_doc", lambda t: ["loss.directions=[doc_to_query]"],
     ["loss.directions=['doc_to_query']", "holds query_to_doc"]),
    ("directions_unknown_term", lambda t: ["loss.directions=[query_to_doc,passage_to_passage]"],
     ["loss.directions=", "'passage_to_passage'", "query_to_query, doc_to_query, doc_to_doc"]),
    ("directions_repeated", lambda t: ["loss.directions=[query_to_doc,doc_to_query,doc_to_query]"],
     ["loss.directions=", "distinct terms"]),
    ("directions_not_a_list", lambda t: ["loss.directions=doc_to_query"],
     ["loss.directions='doc_to_query'", "not a list"]),
    ("per_direction_with_doc_to_doc", lambda t: ["loss.directions=[query_to_doc,doc_to_doc]",
                                                 "loss.partition_mode=per_direction"],
     ["loss.partition_mode='per_direction'", "joint while loss.directions holds doc_to_doc",
      "positive among its candidates"]),
    ("partition_mode_unknown", lambda t: ["loss.partition_mode=separate"],
     ["loss.partition_mode='separate'", "joint, per_direction"]),
    ("hardness_mode_unknown", lambda t: ["loss.hardness_mode=hardest", "loss.hardness_strength=5"],
     ["loss.hardness_mode='hardest'", "null or one of in_batch_negatives, hard_negatives, all_negatives"]),
    ("hardness_strength_negative", lambda t: ["loss.hardness_mode=in_batch_negatives",
                                              "loss.hardness_strength=-1"],
     ["loss.hardness_strength=-1.0", "0 or more"]),
    ("directions_for_hn_only", lambda t: ["loss=hn_only", "k=1", "+loss.directions=[query_to_doc,doc_to_query]"],
     ["loss.directions=", "not a key of loss=hn_only", "loss=mnrl, cached_mnrl"]),
    ("seed_word", lambda t: ["seed=abc"], ["seed='abc'", "integer"]),
    ("seed_negative", lambda t: ["seed=-1"], ["seed=-1", "integer from 0"]),
    ("resume_word", lambda t: ["resume=maybe"], ["resume='maybe'", "true or false"]),
    ("plan_word", lambda t: ["plan=maybe"], ["plan='maybe'", "true or false"]),
    ("range_too_small_for_k", lambda t: ["k=8", "miner.range_max=4"],
     ["miner.range_max=4", "Raise miner.range_max"]),
    ("range_empty", lambda t: ["miner.range_min=5", "miner.range_max=5"],
     ["miner.range_min=5", "below miner.range_max=5"]),
    ("miner_batch_size_0", lambda t: ["miner.batch_size=0"], ["miner.batch_size=0", "at least 1"]),
    ("miner_margin_out_of_range", lambda t: ["miner.absolute_margin=3"], ["miner.absolute_margin=3", "0 to 2"]),
    ("miner_strategy_unknown", lambda t: ["miner.sampling_strategy=best"],
     ["miner.sampling_strategy='best'", "top, random"]),
    pytest.param("faiss_missing", lambda t: ["miner.use_faiss=true"], ["miner.use_faiss=true", "faiss"],
                 marks=pytest.mark.skipif(importlib.util.find_spec("faiss") is not None,
                                          reason="faiss is installed")),
    pytest.param("hardware_cuda_missing", lambda t: ["hardware=cuda"],
                 ["hardware=cuda", "no usable CUDA", "found"],
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    pytest.param("hardware_tpu_missing", lambda t: ["hardware=tpu"], ["hardware=tpu", "torch_xla"],
                 marks=pytest.mark.skipif(importlib.util.find_spec("torch_xla") is not None,
                                          reason="torch_xla is installed")),
    ("precision_unknown", lambda t: ["hardware.precision=fp8"], ["hardware.precision='fp8'", "bf16"]),
    ("loss_needs_negatives_k0", lambda t: ["loss=hn_only", "k=0"], ["k=0", "loss=hn_only"]),
    ("loss_scale_0", lambda t: ["loss.scale=0"], ["loss.scale=0", "above 0"]),
    ("triplet_margin_negative", lambda t: ["loss=triplet", "k=1", "loss.margin=-1"], ["loss.margin=-1", "0 or more"]),
    ("triplet_distance_typo", lambda t: ["loss=triplet", "k=1", "loss.distance=cosnie"],
     ["loss.distance='cosnie'", "euclidean"]),
    ("gist_on_static", lambda t: ["loss=gist", "k=1"], ["model.kind='static'", "tokenizer"]),
    ("cached_mnrl_mini_batch_too_large", lambda t: ["model=minilm", "loss=cached_mnrl",
                                                    "loss.mini_batch_size=64"],
     ["loss.mini_batch_size=64", "train.batch_size=16"]),
    ("cached_mnrl_negatives_mode", lambda t: ["model=minilm", "loss=cached_mnrl", "loss.negatives=bank"],
     ["loss.negatives=bank", "not a key of loss=cached_mnrl", "GradCache embeds the step itself"]),
    ("eval_every_not_a_fraction", lambda t: ["eval=fraction", "eval.every=3"],
     ["eval.every=3", "fraction of training"]),
    ("eval_every_steps_0", lambda t: ["eval=steps", "eval.every=0"], ["eval.every=0", "whole number"]),
    ("eval_batch_size_0", lambda t: ["eval.batch_size=0"], ["eval.batch_size=0", "at least 1"]),
    ("test_distractors_negative", lambda t: ["eval.test_distractors=-5"],
     ["eval.test_distractors=-5", "0 or more"]),
    ("dev_distractors_negative", lambda t: ["eval.dev_distractors=-1"], ["eval.dev_distractors=-1", "0 or more"]),
    ("eval_kind_unknown", lambda t: ["eval.kind=full"], ["eval.kind='full'", "ir, loss"]),
    ("budget_with_max_steps", lambda t: ["train.budget=5000", "train.max_steps=5"],
     ["train.max_steps=5", "train.budget=5000 texts decides the steps"]),
    ("budget_below_one_step", lambda t: ["train.max_steps=-1", "train.budget=10"],
     ["train.budget=10.0", "at least 32 texts"]),
    ("budget_unit_unknown", lambda t: ["train.budget_unit=flops"], ["train.budget_unit='flops'", "texts, tokens, seconds"]),
    ("budget_in_tokens_for_a_loss_that_embeds_itself", lambda t: ["model=minilm", "loss=cached_mnrl", "train.max_steps=-1",
                                                                 "train.budget=100000", "train.budget_unit=tokens"],
     ["train.budget_unit='tokens'", "loss=cached_mnrl", "cannot count the tokens"]),
    ("online_mining_without_a_bank_loss", lambda t: ["loss=triplet", "k=2", "loss.bank_mining=online"],
     ["loss.bank_mining='online'", "loss=triplet takes no bank negatives"]),
    ("multi_without_sources", lambda t: ["data=multi"], ["data=multi needs its sources", "+data.sources.de="]),
    ("multi_sources_without_plus", lambda t: ["data=multi", "data.sources={a:{source:docstrings}}"],
     ["+data.sources.a=", "++data.sources="]),
    ("multi_source_kind_unknown", lambda t: ["data=multi", "+data.sources.a={source:web}"],
     ["data.sources.a.source='web'", "docstrings, hf, files, translations"]),
    ("multi_source_key_typo", lambda t: ["data=multi", "+data.sources.a={source:files,pth:x.jsonl}"],
     ["data.sources.a.pth", "not a key of a files source", "did you mean data.sources.a.path"]),
    ("multi_source_anchor_column_is_its_positive_column", lambda t: [
        "data=multi", "+data.sources.a={source:hf,anchor_column:answer}"],
     ["data.sources.a.positive_column='answer'", "its own answer"]),
    ("multi_include_unknown", lambda t: ["data=multi", "+data.sources.a={source:docstrings}", "data.include=[b]"],
     ["data.include=['b']", "names of data.sources (a)"]),
    ("multi_two_sources_one_name", lambda t: [
        "data=multi", "+data.sources.t={source:translations,languages:[de,fr]}",
        "+data.sources.t-de={source:docstrings}"], ["named 't-de'", "rename one"]),
    ("multi_source_empty_file", lambda t: ["data=multi", "+data.sources.a={source:docstrings}",
                                           "+data.sources.b={source:files,path:'" + _files(t, text="") + "'}"],
     ["data source 'b'", "no rows"]),
    ("multi_source_other_columns", lambda t: [
        "data=multi", "+data.sources.a={source:docstrings}",
        "+data.sources.b={source:files,path:'" + _files(t, [{"question": "q", "answer": "a"}]) + "'}"],
     ["data source 'b'", "anchor_column='anchor'", "['question', 'answer']"]),
    ("multi_source_too_small", lambda t: ["data=multi", "+data.sources.a={source:files,path:'" + _files(
        t, _pairs(300), name="a.jsonl") + "'}",
                                          "+data.sources.b={source:files,path:'" + _files(t, _pairs(3)) + "'}"],
     ["data source 'b'", "split is empty", "3 unique pairs"]),
    ("translations_language_twice", lambda t: ["data=translations", "data.languages=[de,de]"],
     ["data.languages=['de', 'de']", "each once"]),
    ("translations_language_absent", lambda t: ["data=translations", "data.languages=[xx]"],
     ["xx", "data.languages"]),
    ("translations_catalog_not_a_package", lambda t: ["data=translations", "data.catalogs=[nope_pkg]"],
     ["data.catalogs", "'nope_pkg' is not an installed package"]),
    ("static_tokenizer_dir_not_a_tokenizer", lambda t: ["model.tokenizer=" + str(t)],
     ["model.tokenizer=", "tokenizer"]),
    ("static_dim_0", lambda t: ["model.dim=0"], ["model.dim=0", "at least 1"]),
    ("static_vocab_size_1", lambda t: ["model.tokenizer=train", "model.vocab_size=1"], ["model.vocab_size=1"]),
    ("static_init_file_missing", lambda t: [f"model.init={t}/vectors.npy"], ["model.init=", "an existing .npy file"]),
    ("static_options_on_minilm", lambda t: ["model=minilm", "model.tokenizer=train"],
     ["model.tokenizer='train'", "model=static"]),
    ("unknown_group_key_with_plus", lambda t: ["+train.lr=0.1"], ["train.lr", "train.learning_rate"]),
    ("unknown_group_key", lambda t: ["train.lr=0.1"], ["train.lr=0.1", "Did you mean train.learning_rate=0.1"]),
    ("nested_unknown_key", lambda t: ["+train.foo.bar=1"], ["train.foo.bar=1", "no such config key"]),
    ("typo_group", lambda t: ["trian.batch_size=8"], ["trian.batch_size=8", "Did you mean train.batch_size=8"]),
    ("typo_group_with_hydras_plus", lambda t: ["+trian.batch_size=8"],
     ["trian.batch_size=8", "Did you mean train.batch_size=8"]),
    ("plus_on_existing_key", lambda t: ["+k=3"], ["k is already a config key", "k=VALUE"]),
    ("unknown_top_level_secret", lambda t: [f"+api_token={SECRET}"], ["api_token", "no such config key"]),
    ("override_syntax", lambda t: ["k=[1"], ["could not be parsed", "[1"]),
    ("ambiguous_list_without_multirun", lambda t: ["k=1,2"], ["k=1,2", "--multirun"]),
    ("log_model_word", lambda t: ["mlflow.log_model=maybe"], ["mlflow.log_model='maybe'", "not a valid bool"]),
    ("system_metrics_word", lambda t: ["mlflow.log_system_metrics=sometimes"],
     ["mlflow.log_system_metrics='sometimes'", "true or false"]),
    ("experiment_name_empty", lambda t: ["mlflow.experiment_name=''"], ["mlflow.experiment_name=''", "non-empty"]),
    ("outputs_dir_unwritable", lambda t: ["paths.outputs_dir=/etc/passwd/outputs"],
     ["paths.outputs_dir=", "/etc/passwd is a file", "needs a folder"]),
    ("tracking_uri_unknown_scheme", lambda t: ["mlflow.tracking_uri=foo://bar"],
     ["unknown scheme 'foo'", "sqlite"]),
    ("tracking_server_down", lambda t: ["mlflow.tracking_uri=http://127.0.0.1:9"],
     ["does not answer", "mlflow server"]),
    ("tracking_credentials_server_down", lambda t: [f"mlflow.tracking_uri=http://me:{SECRET}@127.0.0.1:9"],
     ["does not answer", "http://me:***@127.0.0.1:9"]),
    ("tracking_store_not_sqlite", lambda t: [_garbage_store(t)], ["is not an SQLite database", "not overwrite"]),
    ("postgres_driver_missing", lambda t: [f"mlflow.tracking_uri=postgresql://me:{SECRET}@localhost/db"],
     ["driver is not installed", "postgresql://me:***@localhost/db"]),
    ("postgres_query_password", lambda t: [f"mlflow.tracking_uri='postgresql://localhost/db?user=me&password={SECRET}'"],
     ["driver is not installed", "postgresql://localhost/db?user=me&password=***"]),
    ("data_path_url_with_a_password", lambda t: ["data=files", f"data.path=https://me:{SECRET}@example.org/pairs.jsonl"],
     ["data.path='https://me:***@example.org/pairs.jsonl'", "no such file"]),
    ("data_path_url_with_a_token", lambda t: ["data=files", f"data.path='https://example.org/pairs.jsonl?token={SECRET}'"],
     ["data.path='https://example.org/pairs.jsonl?token=***'", "no such file"]),
    ("model_id_url_with_a_password", lambda t: ["model=hub", f"model.id=https://me:{SECRET}@example.org/model"],
     ["model.id='https://me:***@example.org/model'", "not a hub id"]),
    ("postgres_driver_missing_plan", lambda t: [f"mlflow.tracking_uri=postgresql://me:{SECRET}@localhost/db",
                                                "plan=true"], ["driver is not installed"]),
    ("sweep_value_out_of_range", lambda t: ["-m", "k=1,70"], ["sweep job k=70", "k=70", "No job was started"]),
    ("sweep_typo", lambda t: ["-m", "trian.batch_size=1,2"], ["trian.batch_size", "train.batch_size"]),
    ("joblib_n_jobs_0", lambda t: ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0", "k=0,1"],
     ["hydra.launcher.n_jobs=0", "1 or more"]),
]


def _case_id(case) -> str:
    return (case.values if hasattr(case, "values") else case)[0]


def _parts(case):
    return case.values if hasattr(case, "values") else case


# A few of the cases again through the real command line, one of each way a message reaches the
# terminal: Hydra's own errors, a type, a rule, a data file, the tracking store, a secret, a sweep.
MULTIRUN = {"sweep_value_out_of_range", "sweep_typo", "joblib_n_jobs_0"}
# Found when the split stage reads the whole file, after the checks that read its first row.
WHOLE_FILE = {"data_not_utf8_at_row_200", "data_malformed_line"}
# Found in a split after a good one (another source's, or the training split's contents), in the
# run: the good split's entry is kept, valid.
AFTER_A_GOOD_SPLIT = {"multi_source_too_small", "data_anchors_equal_their_positives",
                      "batch_size_beyond_the_training_split"}
CLI_CASES = {"k_word", "typo_group", "override_syntax", "loss_needs_negatives_k0", "tracking_credentials_server_down",
             "unknown_top_level_secret", "outputs_dir_unwritable", "unknown_loss_option"} | MULTIRUN | WHOLE_FILE \
    | AFTER_A_GOOD_SPLIT
IN_PROCESS = [case for case in CASES if _case_id(case) not in MULTIRUN | WHOLE_FILE | AFTER_A_GOOD_SPLIT]


def test_the_table_covers_at_least_sixty_cases(tmp_path):
    assert len(CASES) >= 60
    assert {_case_id(case) for case in CASES if "-m" in _parts(case)[1](tmp_path)} == MULTIRUN <= CLI_CASES


@pytest.mark.parametrize("case,overrides,words", IN_PROCESS, ids=[_case_id(c) for c in IN_PROCESS])
def test_bad_input_is_refused_before_anything_loads(case, overrides, words, tmp_path, monkeypatch):
    """What the job checks before any data, model or store is touched (app.check), in-process."""
    monkeypatch.setenv("HNPIPE_ROOT", str(tmp_path))
    with pytest.raises(PipelineError) as refused:
        check(compose([*FAST, f"paths.cache_dir={tmp_path / 'own-cache'}", *overrides(tmp_path)]))
    message = str(refused.value)
    for word in words:
        assert word in message, message
    assert SECRET not in message
    assert not (tmp_path / "own-cache").exists()
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def _cache_entries(cache: Path) -> list[Path]:
    return [p for stage in cache.iterdir() if stage.is_dir() for p in stage.iterdir() if p.is_dir()] \
        if cache.exists() else []


def _run(case, base: Path, shared_cache: Path):
    """Run one case's CLI in its own outputs dir, store and cache; (its Cli, the result)."""
    case_id, overrides, _ = _parts(case)
    tmp = base / case_id
    tmp.mkdir()
    cli = Cli(tmp, shared_cache)
    given = overrides(tmp)
    args = [sys.executable, "-m", "pipeline", *[a for a in given if a == "-m"], *FAST,
            f"paths.cache_dir={tmp / 'own-cache'}", *[a for a in given if a != "-m"]]
    return cli, warm.run(args, cwd=ROOT, env=cli.env(), timeout=300)


ON_THE_CLI = [case for case in CASES if _case_id(case) in CLI_CASES]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, shared_cache) -> dict:
    """The command-line cases' runs, three at a time: most of each is interpreter start-up."""
    base = tmp_path_factory.mktemp("bad-inputs")
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = pool.map(lambda case: _run(case, base, shared_cache), ON_THE_CLI)
        return {_case_id(case): result for case, result in zip(ON_THE_CLI, results)}


def test_every_command_line_case_is_in_the_table():
    assert {_case_id(case) for case in ON_THE_CLI} == CLI_CASES


@pytest.mark.parametrize("case,overrides,words", ON_THE_CLI, ids=[_case_id(c) for c in ON_THE_CLI])
def test_bad_input_fails_clearly_on_the_command_line_and_leaves_nothing_behind(case, overrides, words, outcomes):
    cli, result = outcomes[case]
    assert result.returncode == 2, result.stderr[-2000:]
    for word in words:
        assert word in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error: ")]) == 1
    if case in AFTER_A_GOOD_SPLIT:  # only the good source's split, complete (and the data's harvest)
        assert [entry.parent.name for entry in _cache_entries(cli.root / "own-cache")
                if entry.parent.name != "harvest"] == ["split"]
    else:
        assert _cache_entries(cli.root / "own-cache") == []
    if (cli.root / "mlflow.db").exists():
        assert all(run.info.status != "RUNNING" for run in cli.runs())


def test_a_csv_saved_with_a_byte_order_mark_has_its_own_column_names(tmp_path, monkeypatch):
    monkeypatch.setenv("HNPIPE_ROOT", str(tmp_path))
    rows = "".join(f"how do I do thing {i},module.thing_{i}\n" for i in range(60))
    path = _files(tmp_path, name="pairs.csv", data="\ufeffanchor,positive\n".encode() + rows.encode())
    check(compose([*FAST, f"paths.cache_dir={tmp_path / 'cache'}", "data=files", f"data.path={path}"]))


@pytest.mark.parametrize("root", ["", "  "])
def test_an_empty_hnpipe_root_is_unset(root, monkeypatch):
    monkeypatch.setenv("HNPIPE_ROOT", root)
    assert compose([]).paths.outputs_dir == f"{Path.cwd()}/outputs"


def test_params_mask_a_password_in_the_query_string_of_any_uri():
    from omegaconf import OmegaConf

    from pipeline.tracking.store import flatten

    cfg = compose([f"mlflow.tracking_uri='sqlite:////tmp/x.db?password={SECRET}'",
                   f"model.id='https://me:{SECRET}@example.org/model?access_token={SECRET}'"])
    params = flatten(OmegaConf.create({"mlflow": {"tracking_uri": cfg.mlflow.tracking_uri}, "model": {"id": cfg.model.id}}))
    assert params["mlflow.tracking_uri"] == "sqlite:////tmp/x.db?password=***"
    assert params["model.id"] == "https://me:***@example.org/model?access_token=***"
    assert SECRET not in str(params)


@pytest.mark.parametrize("show", [["--cfg", "job"], ["--info", "config"]], ids=["cfg_job", "info_config"])
def test_cfg_job_and_info_config_print_the_config_with_secrets_masked(tmp_path, show):
    # A cold process (1 s: printing the config loads no library), not a warm child: in make check
    # nothing else needs the warm server, whose start costs 20 s.
    result = subprocess.run([sys.executable, "-m", "pipeline", *show, f"+api_token={SECRET}",
                             f"mlflow.tracking_uri=postgresql://me:{SECRET}@localhost/db"], cwd=ROOT,
                            env=Cli(tmp_path, tmp_path).env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "api_token: '***'" in result.stdout and "postgresql://me:***@localhost/db" in result.stdout
    assert SECRET not in result.stdout + result.stderr
