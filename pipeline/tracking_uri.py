"""What a tracking URI names on this machine, for the modules below pipeline.tracking that check
or explain the store (preflight, faults, summary) without importing MLflow's side of it."""

from __future__ import annotations

from pathlib import Path


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of an sqlite tracking URI (None for a server or another database)."""
    if not tracking_uri.startswith("sqlite:") or ":///" not in tracking_uri:
        return None
    return Path(tracking_uri.split(":///", 1)[1].split("?", 1)[0])
