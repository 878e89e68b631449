"""Split and eval options compose, presets say what they promise, bad eval/split input is caught early."""

import pytest

from helpers import assert_refused, compose
from pipeline.config.rules import validate


def test_default_split_is_the_cheap_one():
    cfg = compose([])
    assert (cfg.split.train, cfg.split.dev, cfg.split.test) == (0.90, 0.01, 0.09)


@pytest.mark.parametrize("option,ratios", [("80-10-10", (0.8, 0.1, 0.1)), ("70-30", (0.7, 0.21, 0.09))])
def test_split_options_set_their_ratios(option, ratios):
    cfg = compose([f"split={option}"])
    validate(cfg)
    assert (cfg.split.train, cfg.split.dev, cfg.split.test) == ratios


def test_custom_split_takes_the_ratios_given():
    cfg = compose(["split=custom", "split.train=0.6", "split.dev=0.2", "split.test=0.2"])
    validate(cfg)
    assert cfg.split.train == 0.6


def test_slow_preset_evaluates_five_times_an_epoch_on_the_whole_70_30_dev_split():
    cfg = compose(["+experiment=static_eval_slow"])
    validate(cfg)
    assert cfg.preset == "static_eval_slow" and cfg.model.kind == "static"
    assert (cfg.split.train, cfg.split.dev, cfg.split.max_dev) == (0.7, 0.21, None)
    assert (cfg.eval.cadence, cfg.eval.every, cfg.eval.kind) == ("fraction", 0.2, "ir")
    assert cfg.eval.dev_max_corpus is None


def test_fast_preset_evaluates_twice_on_a_capped_90_1_9_dev_split():
    cfg = compose(["+experiment=static_eval_fast"])
    validate(cfg)
    slow = compose(["+experiment=static_eval_slow"])
    assert cfg.preset == "static_eval_fast" and cfg.model.kind == "static"
    assert (cfg.split.train, cfg.split.dev) == (0.9, 0.01) and cfg.split.max_dev is not None
    assert (cfg.eval.cadence, cfg.eval.every) == ("fraction", 0.5)
    assert cfg.train == slow.train and cfg.k == slow.k  # only evaluation differs


@pytest.mark.parametrize("overrides,words", [
    (["split=custom"], ["split ratios train, dev, test are not set", "split.train=0.6"]),
    (["split.max_test=0"], ["split.max_test=0", "the test stage needs data"]),
    (["split.max_dev=0", "eval=final"], ["split.max_dev=0", "eval.cadence=final", "eval=none"]),
    (["split.dev=0", "split.train=0.91", "eval=steps"], ["split.dev=0", "eval.cadence=steps"]),
    (["split.max_dev=-1", "eval=none"], ["split.max_dev=-1", "0 or more"]),
    (["eval.kind=full"], ["eval.kind='full'", "ir, loss"]),
    (["eval.dev_max_corpus=0"], ["eval.dev_max_corpus=0", "at least 1 document"]),
])
def test_bad_split_or_eval_input_names_key_value_and_what_is_allowed(overrides, words):
    assert_refused(overrides, words)


def test_no_dev_rows_is_fine_when_nothing_evaluates_on_dev():
    validate(compose(["eval=none", "split.max_dev=0"]))
    validate(compose(["eval=none", "split.dev=0", "split.train=0.91"]))
