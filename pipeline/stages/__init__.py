"""The pipeline's stages: each a function from its config and upstream outputs to outputs on disk.

No stage imports Hydra or MLflow: the driver (pipeline.driver) runs them, and the recorder logs
what they measure.
"""
