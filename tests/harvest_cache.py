"""Put the default data's harvest into the stage cache at argv[1]. The tests run it as a warm
child (tests/warm.py), whose server has harvested already, so it takes a fraction of a second."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omegaconf import OmegaConf  # noqa: E402

from pipeline.cache import StageCache  # noqa: E402
from pipeline.config.schema import DocstringsData  # noqa: E402
from pipeline.stages import sources  # noqa: E402

sources.harvested(OmegaConf.structured(DocstringsData), StageCache(sys.argv[1]))
