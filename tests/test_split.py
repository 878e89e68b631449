"""The split is deterministic, its parts disjoint by positive, and its ratios honoured."""

import pytest
from omegaconf import OmegaConf

from pipeline.errors import PipelineError
from pipeline.stages.docstrings import harvest
from pipeline.stages.split import split_rows


@pytest.fixture(scope="module")
def rows():
    pairs = harvest([], 4, 40, 400)
    return [p | {"_extra": p} for p in pairs]


def _cfg(**over):
    base = {"train": 0.9, "dev": 0.01, "test": 0.09, "max_dev": None, "max_test": None,
            "group_column": None}
    return OmegaConf.create(base | over)


@pytest.mark.slow  # a whole harvest of the standard library, numpy and scipy
def test_default_data_is_real_and_large_enough(harvested_cache):
    from pipeline.cache import StageCache
    from pipeline.config.schema import DocstringsData
    from pipeline.stages import sources

    pairs = harvest(["numpy", "scipy"], 4, 40, 1000)
    assert len(pairs) >= 3000
    # deterministic: what another process harvested (the session's cache entry of the default data)
    assert pairs == sources.harvested(OmegaConf.structured(DocstringsData), StageCache(harvested_cache))
    anchors = [p["anchor"] for p in pairs]
    assert len(set(anchors)) == len(anchors)
    assert any(p["positive"].startswith("json.dumps\n") for p in pairs)


def test_split_is_deterministic_and_disjoint(rows):
    first = split_rows(rows, _cfg(), seed=7)
    again = split_rows(rows, _cfg(), seed=7)
    other = split_rows(rows, _cfg(), seed=8)
    assert first == again
    assert first["test"] != other["test"]
    positives = {name: {r["positive"] for r in part} for name, part in first.items()}
    assert not positives["train"] & positives["test"]
    assert not positives["train"] & positives["dev"]
    assert not positives["dev"] & positives["test"]
    n = sum(len(p) for p in first.values())
    assert len(first["test"]) == round(0.09 * n) and len(first["dev"]) == round(0.01 * n)


def test_exact_duplicates_are_dropped_and_shared_positives_stay_together(rows):
    extra = [dict(rows[0]), rows[1] | {"anchor": "another way to ask for it"}]
    parts = split_rows(rows + extra, _cfg(), seed=1)
    assert sum(len(p) for p in parts.values()) == len(rows) + 1
    where = {name for name, part in parts.items() for r in part if r["positive"] == rows[1]["positive"]}
    assert len(where) == 1


def test_caps_apply_after_the_ratios(rows):
    parts = split_rows(rows, _cfg(train=0.7, dev=0.0, test=0.3, max_test=25), seed=1)
    assert len(parts["test"]) == 25 and not parts["dev"]


def test_empty_data_is_a_clear_error():
    with pytest.raises(PipelineError, match="empty after removing"):
        split_rows([], _cfg(), seed=1)


def test_group_column_keeps_a_group_in_one_split(rows):
    grouped = [r | {"_extra": r["_extra"] | {"module": r["positive"].split(".")[0]}} for r in rows]
    parts = split_rows(grouped, _cfg(train=0.8, dev=0.1, test=0.1, group_column="module"), seed=3)
    modules = {name: {r["_extra"]["module"] for r in part} for name, part in parts.items()}
    assert all(modules[name] for name in modules)
    assert not modules["train"] & modules["test"]
    assert not modules["train"] & modules["dev"]
    assert not modules["dev"] & modules["test"]


def test_unknown_group_column_lists_the_columns(rows):
    with pytest.raises(PipelineError, match=r"split.group_column='source'.*columns \['anchor', 'positive'\]"):
        split_rows(rows, _cfg(group_column="source"), seed=1)


def test_dev_cap_applies_after_the_ratio_and_a_zero_cap_leaves_dev_empty(rows):
    assert len(split_rows(rows, _cfg(train=0.8, dev=0.1, test=0.1, max_dev=30), seed=1)["dev"]) == 30
    assert split_rows(rows, _cfg(max_dev=0), seed=1)["dev"] == []


def test_a_split_that_leaves_no_training_rows_is_a_clear_error(rows):
    with pytest.raises(PipelineError, match="train split is empty"):
        split_rows(rows[:10], _cfg(train=0.01, dev=0.5, test=0.49), seed=1)


@pytest.mark.parametrize("ratios", [{"train": 0.8, "dev": 0.1, "test": 0.1},
                                    {"train": 0.7, "dev": 0.21, "test": 0.09}])
def test_preset_ratios_are_honoured(rows, ratios):
    parts = split_rows(rows, _cfg(**ratios), seed=5)
    n = sum(len(p) for p in parts.values())
    assert len(parts["test"]) == round(ratios["test"] * n)
    assert len(parts["dev"]) == round(ratios["dev"] * n)


def test_70_30_holds_out_the_same_test_rows_as_90_1_9(rows):
    slow = split_rows(rows, _cfg(train=0.7, dev=0.21, test=0.09), seed=42)
    fast = split_rows(rows, _cfg(), seed=42)
    assert slow["test"] == fast["test"]


def test_aligned_sources_put_each_shared_anchor_in_the_same_part(rows):
    """Two 'languages' sharing most anchors (each missing a different fifth): an anchor tested in
    one is never trained on in the other, and the ratios still hold roughly."""
    first = [dict(r, positive="A " + r["positive"]) for i, r in enumerate(rows) if i % 5 != 0]
    second = [dict(r, positive="B " + r["positive"]) for i, r in enumerate(rows) if i % 5 != 1]
    cfg = _cfg(dev=0.05, test=0.15, train=0.8)
    a, b = (split_rows(part, cfg, seed=3, aligned=True) for part in (first, second))
    place = {r["anchor"]: name for name, part in a.items() for r in part}
    shared = [(place[r["anchor"]], name) for name, part in b.items() for r in part if r["anchor"] in place]
    assert shared and all(x == y for x, y in shared)
    assert abs(len(a["test"]) / len(first) - 0.15) < 0.05
    unaligned = [split_rows(part, cfg, seed=3) for part in (first, second)]
    place = {r["anchor"]: name for name, part in unaligned[0].items() for r in part}
    assert any(place.get(r["anchor"]) == "train" for r in unaligned[1]["test"])  # what it prevents


def test_aligned_split_honours_the_caps(rows):
    parts = split_rows(rows, _cfg(max_test=20, max_dev=5), seed=1, aligned=True)
    assert len(parts["test"]) == 20 and len(parts["dev"]) == 5
    assert sum(map(len, parts.values())) == len({(r["anchor"], r["positive"]) for r in rows})


def test_a_text_far_longer_than_the_model_reads_is_a_warning_tag_not_silence(tmp_path):
    """One cell of 30 MB made evaluation ~10x slower: the split stage says so (tag and summary)."""
    from pathlib import Path

    from helpers import compose, write_jsonl
    from pipeline.result import RunResult
    from pipeline.stages import split
    from pipeline.stages.stage import Context

    rows = [{"anchor": f"how do I do thing {i}", "positive": f"thing_{i}()"} for i in range(60)]
    rows[7]["positive"] = "word " * 1_000  # 5,000 characters: past 100x max_seq_length=32
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    cfg = compose(["model=static", "model.max_seq_length=32", "data=files", f"data.path={data}",
                   f"paths.cache_dir={tmp_path / 'cache'}"])
    result = RunResult(Path(tmp_path))
    split.run(Context(cfg, None, result))
    warning = result.tags["warning/long_texts"]
    assert "1 text(s) longer than 3,200 characters (the longest: 5,000)" in warning
    assert "model.max_seq_length=32" in warning and "Cut such texts" in warning

    rows[7]["positive"] = "word " * 600  # 3,000 characters: within the limit, no warning
    write_jsonl(data, rows)
    quiet = RunResult(Path(tmp_path))
    split.run(Context(cfg, None, quiet))
    assert "warning/long_texts" not in quiet.tags


def test_splits_of_one_source_read_one_harvest_from_the_cache(rows, tmp_path):
    """A harvested source goes into the stage cache once: splits of it with other settings (or a
    fresh process) read those pairs back instead of harvesting again (18 s for the default)."""
    import json

    from helpers import compose
    from pipeline.cache import StageCache
    from pipeline.stages import split

    cfg = compose(["model=static", "data.packages=[]", "data.max_body_chars=400"])
    cache = StageCache(tmp_path / "cache")
    for name, ratios in (("a", {}), ("b", {"train": 0.7, "dev": 0.0, "test": 0.3})):
        (tmp_path / name).mkdir()
        split.build(cfg.data, OmegaConf.merge(cfg.split, ratios), True, tmp_path / name, cache)
    (entry,) = [path for path in (tmp_path / "cache" / "harvest").iterdir() if path.is_dir()]
    assert json.loads((entry / "pairs.json").read_text()) == [{k: v for k, v in r.items() if k != "_extra"} for r in rows]
    assert json.loads((tmp_path / "b" / "stats.json").read_text())["split/test_rows"] > \
        json.loads((tmp_path / "a" / "stats.json").read_text())["split/test_rows"]
