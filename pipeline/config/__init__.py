"""Configuration: every key declared once (schema, losses), the rules between keys, and the
device a run gets; all checked before any data or model loads. Importing the package registers
the schema in Hydra's ConfigStore, which conf/config.yaml extends, and the resolvers its
defaults use.
"""

from pipeline.config import resolvers  # noqa: F401  ${cwd:} and ${run_suffix:}
from pipeline.config.schema import register

register()
