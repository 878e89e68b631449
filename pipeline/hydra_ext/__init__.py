"""Hydra glue: callbacks that run around jobs and sweeps, launcher shares, resolvers."""
