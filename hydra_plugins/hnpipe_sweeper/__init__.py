"""Hydra's basic sweeper, minus duplicate jobs: `k=2,2,4` runs k=2 once.

Hydra only loads sweepers from the `hydra_plugins` namespace package, hence
this module lives here; conf/hydra/default.yaml selects it.
"""

from __future__ import annotations

import logging
from typing import List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override

log = logging.getLogger(__name__)


class DedupSweeper(BasicSweeper):
    @staticmethod
    def split_arguments(overrides: List[Override], max_batch_size: Optional[int]) -> List[List[List[str]]]:
        (jobs,) = BasicSweeper.split_arguments(overrides, None)
        unique = list(dict.fromkeys(tuple(job) for job in jobs))
        if len(unique) < len(jobs):
            log.warning("%d duplicate sweep job(s) dropped: each distinct set of values runs once",
                        len(jobs) - len(unique))
        unique_jobs = [list(job) for job in unique]
        if max_batch_size is None:
            return [unique_jobs]
        return list(BasicSweeper.split_overrides_to_chunks(unique_jobs, max_batch_size))
