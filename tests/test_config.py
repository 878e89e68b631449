"""Every config group option composes and validates; bad values fail with a clear message."""

import sys

import pytest
from omegaconf import OmegaConf

import warm
from helpers import CONF, ROOT, assert_refused, compose
from pipeline.config.inert import ADDED, inert
from pipeline.config.rules import validate
from pipeline.errors import PipelineError
from pipeline.tracking.store import flatten
from pipeline.tracking.sweeps import config_hash


def _group_options() -> dict[str, list[str]]:
    """Every option of every group, from conf/ and the schema in Hydra's ConfigStore."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import pipeline.config  # noqa: F401

    with initialize_config_dir(str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        return {g: sorted(loader.get_group_options(g)) for g in loader.list_groups("") if g not in ("hydra", "paths")}


OPTIONS = _group_options()
GROUPS = sorted(OPTIONS)

def _missing_hardware():
    import importlib.util

    import torch

    present = {"cuda": torch.cuda.is_available(), "tpu": importlib.util.find_spec("torch_xla") is not None}
    return {("hardware", device) for device, there in present.items() if not there}


MISSING_HARDWARE = _missing_hardware()


def _options(group):
    return OPTIONS[group]


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes_and_validates(group, option):
    prefix = "+" if group == "experiment" else ""
    overrides = [f"{prefix}{group}={option}"]
    if (group, option) == ("data", "files"):
        overrides.append("data.path=/some/pairs.jsonl")
    if (group, option) == ("data", "multi"):
        overrides += ["+data.sources.api={source: docstrings}", "+data.sources.de={source: translations, languages: [de]}"]
    if (group, option) == ("split", "custom"):
        overrides += ["split.train=0.8", "split.dev=0.1", "split.test=0.1"]
    if group == "loss" and option in ("hn_only", "triplet", "gist"):
        overrides.append("k=1")
    cfg = compose(overrides)
    if (group, option) in MISSING_HARDWARE:  # refused where absent, naming what was found
        with pytest.raises(PipelineError, match="found"):
            validate(cfg)
    else:
        validate(cfg)


def test_groups_cover_every_concern():
    assert {"data", "split", "miner", "loss", "model", "train", "eval", "hardware", "mlflow",
            "experiment"} <= set(GROUPS)


def test_presets_set_what_their_names_promise():
    assert compose(["+experiment=hn_k8"]).k == 8
    assert compose(["+experiment=pairs_baseline"]).k == 0
    assert compose(["+experiment=hn_k8"]).model.kind == "package"



@pytest.mark.parametrize("override,words", [
    ("k=-1", ["k=-1", "0 to 64"]),
    ("k=65", ["k=65", "0 to 64"]),
    ("k=8.5", ["k=8.5", "integer"]),
    ("k=eight", ["k='eight'", "integer"]),
    ("split.train=0.8", ["sum to 0.9", "not 1"]),
    ("split.test=0", ["split.test", "above 0"]),
    ("miner.range_max=4", ["miner.range_max=4", "range_min + k = 8"]),
    ("train.batch_size=1", ["train.batch_size=1", "at least 2"]),
    ("eval.cadence=often", ["eval.cadence='often'", "fraction"]),
    ("train.learning_rate=fast", ["train.learning_rate", "fast"]),
    ("+train.lr=0.1", ["train", "lr"]),
    ("objectives=[]", ["objectives", "a non-empty list of metric names"]),
])
def test_bad_values_name_the_key_the_value_and_what_is_allowed(override, words):
    assert_refused([override], words)


def test_a_job_returns_its_objectives_and_a_metric_it_did_not_log_names_the_key():
    from pipeline.app import objective

    metrics = {"test/ndcg_at_10": 0.3, "time/train_s": 2.0}
    assert objective(compose(["model=static"]), metrics) == 0.3
    assert objective(compose(["objectives=[test/ndcg_at_10,time/train_s]"]), metrics) == (0.3, 2.0)
    with pytest.raises(PipelineError, match="objectives: the run logged no metric 'time/train_secs'"):
        objective(compose(["objectives=[test/ndcg_at_10,time/train_secs]"]), metrics)


@pytest.mark.slow
def test_cli_prints_the_composed_config():
    result = warm.run([sys.executable, "-m", "pipeline", "--cfg", "job", "+experiment=hn_k8"],
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "k: 8" in result.stdout and "preset: hn_k8" in result.stdout


@pytest.mark.fresh_store  # checks that no store is created
def test_cli_bad_value_exits_nonzero_without_traceback(cli):
    result = cli("k=eight")
    assert result.returncode == 2
    assert "k='eight' is not allowed" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (cli.root / "mlflow.db").exists()  # refused before any store or run exists


def test_unknown_group_option_gets_hydras_message(cli):
    result = cli("loss=nope")
    assert result.returncode != 0
    assert "Could not find 'loss/nope'" in result.stderr


def test_mnrl_options_at_their_defaults_leave_the_config_hash_and_the_report_row_as_before():
    """loss.directions, partition_mode, hardness_mode and hardness_strength came with sentence-transformers
    6: at their defaults a config hashes (resume) and pools (report) as one recorded without them, and
    hardness keys that act on nothing (no mode, strength 0, hard_negatives at k=0) change nothing."""
    def job(k: int = 2):
        composed = compose(["model=static", f"k={k}"])
        return OmegaConf.masked_copy(composed, [key for key in composed if key != "hydra"])

    cfg = job()
    before = OmegaConf.create(OmegaConf.to_container(cfg))
    for name in ADDED:
        assert OmegaConf.select(cfg, name) is not None or name == "loss.hardness_mode"
        del before.loss[name.split(".")[1]]
    assert config_hash(cfg) == config_hash(before)
    # The same config's MLflow params (as strings): the report pools them with a row recorded without them.
    assert set(ADDED) <= inert(flatten(OmegaConf.create({"k": cfg.k, "loss": cfg.loss})))

    def with_loss(k: int = 2, **loss) -> str:
        return config_hash(OmegaConf.merge(job(k), {"loss": loss}))

    assert with_loss(hardness_strength=5.0) == with_loss(hardness_mode="in_batch_negatives") == config_hash(cfg)
    assert with_loss(0, hardness_mode="hard_negatives", hardness_strength=5.0) == with_loss(0)
    weighted = with_loss(hardness_mode="hard_negatives", hardness_strength=5.0)
    assert len({weighted, with_loss(hardness_mode="all_negatives", hardness_strength=5.0), config_hash(cfg),
                with_loss(directions=["query_to_doc", "doc_to_query"]), with_loss(partition_mode="per_direction")}) == 5
