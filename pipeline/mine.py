"""Mine stage: k hard negatives per training query, as (anchor, positive, negative_1..k).

k = 0 needs no stage at all: training then uses plain pairs and in-batch negatives.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from pipeline.errors import PipelineError

VERSION = "1"


def run(miner_cfg: DictConfig, k: int, train_ds, model, out_dir: Path) -> None:
    """Write the mined n-tuple training set and stats.json (rows in, out, short)."""
    from sentence_transformers.util import mine_hard_negatives

    mined = mine_hard_negatives(
        train_ds,
        model,
        anchor_column_name="anchor",
        positive_column_name="positive",
        range_min=miner_cfg.range_min,
        range_max=miner_cfg.range_max,
        max_score=miner_cfg.max_score,
        min_score=miner_cfg.min_score,
        absolute_margin=miner_cfg.absolute_margin,
        relative_margin=miner_cfg.relative_margin,
        num_negatives=k,
        sampling_strategy=miner_cfg.sampling_strategy,
        output_format="n-tuple",
        batch_size=miner_cfg.batch_size,
        use_faiss=miner_cfg.use_faiss,
        verbose=False,
    )
    if len(mined) == 0:
        raise PipelineError(
            f"The training set is empty after mining: none of the {len(train_ds)} train queries has "
            f"k={k} hard negatives in range {miner_cfg.range_min}..{miner_cfg.range_max}. "
            "Lower k or use more data.")
    mined.save_to_disk(str(out_dir / "train"))
    stats = {"mine/rows_in": len(train_ds), "mine/rows_out": len(mined),
             "mine/rows_short": len(train_ds) - len(mined)}
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=1))


def load(entry_dir: Path):
    """The mined training set an entry holds."""
    import datasets

    return datasets.load_from_disk(str(entry_dir / "train"))
