"""Split stage: load (anchor, positive) pairs, de-duplicate, split train/dev/test.

Rows are split by group (by default the positive text), so no positive can
appear in two splits: a leaked positive would make test scores lie. With a fixed
test set (eval.test) the split makes train and dev only. `split.seed` seeds it,
not the training seed, so runs of several seeds share one split.

Translations of one English text are aligned across languages (data.align): groups
are ordered by a seeded hash of the English anchor rather than shuffled, so an
English text in German test is in French test too, not a French training text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path

from omegaconf import DictConfig

from pipeline import names
from pipeline.cache import StageCache, stage_key
from pipeline.errors import PipelineError, refused
from pipeline.stages import sources
from pipeline.stages.sources import load_pairs
from pipeline.stages.stage import Context, Stage, resolved

log = logging.getLogger(__name__)

VERSION = "2"
SPLITS = ("train", "dev", "test")
STAGE = Stage("split", VERSION,
              config=lambda cfg: {"data": resolved(cfg.data), "split": resolved(cfg.split),
                                  "fixed_test": cfg.eval.test is not None},
              fingerprint=lambda ctx: sources.fingerprint(ctx.cfg.data))


def _group_of(row: dict, group_column: str | None) -> str:
    return str(row["_extra"][group_column]) if group_column else row["positive"]


def _counted_parts(groups: dict[str, list[dict]], targets: dict[str, int], seed: int):
    """(group, part) in a seeded shuffle: test, then dev, take groups until each has its rows."""
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    taken = {"test": 0, "dev": 0, "train": 0}
    for name in names:
        part = next((p for p in ("test", "dev") if taken[p] < targets[p]), "train")
        taken[part] += len(groups[name])
        yield name, part


def _aligned_parts(groups: dict[str, list[dict]], cfg: DictConfig, seed: int, with_test: bool):
    """(group, part) by where a seeded hash of the group's name falls in [0, 1): test below the
    test ratio, dev below test + dev, so a name lands in the same part in every source (up to
    split.max_test and max_dev: groups past a cap go to train)."""
    test = cfg.test if with_test else 0.0
    caps = {"test": cfg.max_test, "dev": cfg.max_dev, "train": None}
    taken = {"test": 0, "dev": 0, "train": 0}
    for name in sorted(groups, key=lambda name: _unit(name, seed)):
        u = _unit(name, seed)
        part = "test" if u < test else "dev" if u < test + cfg.dev else "train"
        if caps[part] is not None and taken[part] >= caps[part]:
            part = "train"
        taken[part] += len(groups[name])
        yield name, part


def _unit(name: str, seed: int) -> float:
    return int(hashlib.sha1(f"{seed}\0{name}".encode()).hexdigest(), 16) / 16 ** 40


def split_rows(rows: list[dict], cfg: DictConfig, seed: int, with_test: bool = True,
               aligned: bool = False) -> dict[str, list[dict]]:
    """De-duplicate, then assign whole groups to train/dev/test by the configured ratios; without
    a test part (a fixed test set) the test ratio goes to train. `aligned` groups by anchor and
    places each by its hash, the same in every source that shares anchors."""
    if cfg.group_column and rows and cfg.group_column not in rows[0]["_extra"]:
        raise PipelineError(
            f"split.group_column={cfg.group_column!r}: no such column; the data has columns "
            f"{list(rows[0]['_extra'])}."
        )
    seen, unique = set(), []
    for row in rows:
        if (row["anchor"], row["positive"]) not in seen and row["anchor"].strip() and row["positive"].strip():
            seen.add((row["anchor"], row["positive"]))
            unique.append(row)
    if not unique:
        raise PipelineError("The data is empty after removing blank and duplicate pairs: "
                            "check data.path and the column mapping.")
    groups: dict[str, list[dict]] = {}
    for row in unique:
        groups.setdefault(row["anchor"] if aligned else _group_of(row, cfg.group_column), []).append(row)
    n = len(unique)
    targets = {"test": round(cfg.test * n) if with_test else 0, "dev": round(cfg.dev * n)}
    for part, cap in (("test", cfg.max_test), ("dev", cfg.max_dev)):
        if cap is not None:
            targets[part] = min(targets[part], cap)
    parts: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for name, part in (_aligned_parts(groups, cfg, seed, with_test) if aligned
                       else _counted_parts(groups, targets, seed)):
        parts[part].extend(groups[name])
    wanted = {"train": True, "dev": cfg.dev > 0 and cfg.max_dev != 0,
              "test": with_test and cfg.test > 0 and cfg.max_test != 0}
    for part in SPLITS:
        if not parts[part] and wanted[part]:
            raise PipelineError(
                f"The {part} split is empty ({n} unique pairs, ratios train={cfg.train} "
                f"dev={cfg.dev} test={cfg.test}): use more data or larger ratios."
            )
    return parts


def _pairs_dataset(rows: list[dict]):
    import datasets

    return datasets.Dataset.from_dict(
        {"anchor": [r["anchor"] for r in rows], "positive": [r["positive"] for r in rows]},
        features=datasets.Features({"anchor": datasets.Value("string"),
                                    "positive": datasets.Value("string")}))


def run(ctx: Context):
    """The split stage: the data source's train/dev[/test] DatasetDict, cached; its sizes and the
    dev set (as a dataset input) on the run's result."""
    cfg = ctx.cfg
    entry, seconds = ctx.cached(STAGE, lambda out: build(cfg.data, cfg.split, cfg.eval.test is None, out, ctx.cache))
    ctx.add(json.loads((entry.path / "stats.json").read_text()) | {"time/split_s": seconds})
    splits = load(entry.path)
    ctx.add_input("dev", splits["dev"], part_digest(ctx, "dev"))
    _warn_long_texts(ctx, splits)
    return splits


# A text this many times model.max_seq_length characters long holds far more than the model reads.
_LONG_TEXT_CHARS_PER_TOKEN = 100


def _warn_long_texts(ctx: Context, splits) -> None:
    """Warn (tag warning/long_texts, and the summary) of texts far longer than the model reads: the
    tokenizer reads each whole before it truncates, every time the text is encoded (mining, each
    evaluation, training), so one 30 MB cell makes evaluation ~10x slower. They are not cut here:
    the data is the user's, and a cut changes neither the model's input nor the cache."""
    limit = _LONG_TEXT_CHARS_PER_TOKEN * ctx.cfg.model.max_seq_length
    lengths = [len(text) for part in splits.values() for column in ("anchor", "positive") for text in part[column]]
    long = [length for length in lengths if length > limit]
    if not long:
        return
    message = (f"the data holds {len(long)} text(s) longer than {limit:,} characters (the longest: {max(long):,}): "
               f"the model reads only the first model.max_seq_length={ctx.cfg.model.max_seq_length} tokens of each, "
               "but the tokenizer reads each whole every time it is encoded (mining, every evaluation, training), "
               "which can make the run many times slower. Cut such texts in the data.")
    log.warning(message)
    ctx.add(tags={names.warning("long_texts"): message})


def part_digest(ctx: Context, part: str) -> str:
    """A digest of the split's `part` ('train', 'dev'), from the cache key that made it: equal
    digests, equal rows, however many (MLflow's own digest reads only the first 10,000 rows)."""
    return stage_key(part, VERSION, {}, [ctx.key(STAGE)])


def build(data_cfg: DictConfig, split_cfg: DictConfig, with_test: bool, out_dir: Path,
          cache: StageCache) -> None:
    """Write train/dev[/test] as a DatasetDict, plus stats.json with their sizes (leaks are
    counted against the test set the run scores on: test_sets.leaks); a harvested source's pairs
    come through `cache` (sources.load_pairs)."""
    import datasets

    aligned = data_cfg.source == "translations" and data_cfg.align
    parts = split_rows(load_pairs(data_cfg, cache), split_cfg, split_cfg.seed, with_test, aligned)
    # An empty split (dev with split.dev=0) is left out: datasets cannot reload one; load() restores it.
    dsd = datasets.DatasetDict({name: _pairs_dataset(rows) for name, rows in parts.items() if rows})
    dsd.save_to_disk(str(out_dir / "splits"))
    stats = {f"split/{name}_rows": len(rows) for name, rows in parts.items()}
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=1))


def load(entry_dir: Path):
    """The DatasetDict a split entry holds, with an empty split for each one left out."""
    import datasets

    dsd = datasets.load_from_disk(str(entry_dir / "splits"))
    for name in SPLITS:
        if name not in dsd:
            dsd[name] = _pairs_dataset([])
    return dsd


# A share of identical (anchor, positive) training pairs from which the data teaches nothing.
_IDENTICAL_SHARE = 0.5


def check_training_rows(cfg: DictConfig, train) -> None:
    """What the training split must hold for the run to learn: a batch of pairs at least, and pairs
    whose two sides differ (a query that is its own answer scores 1.0 on every metric)."""
    if cfg.train.batch_size > len(train):
        raise refused("train.batch_size", cfg.train.batch_size, f"at most the {len(train)} pairs of the training "
                      "split: a batch cannot hold more pairs than the data has",
                      f"Lower train.batch_size, e.g. train.batch_size={min(32, len(train))}, or use more data.")
    same = sum(a.strip() == p.strip() for a, p in zip(train["anchor"], train["positive"]))
    if same >= _IDENTICAL_SHARE * len(train):
        raise PipelineError(f"data: {same} of the {len(train)} training pairs have an anchor equal to its positive "
                            "(every metric would be 1.0 and the run learn nothing): check data.anchor_column and "
                            "data.positive_column, or the data itself.")
