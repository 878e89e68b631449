"""Checks that need the disk or the network, run before any MLflow run or model exists.

The schema checks values; these check that what the values point at is there:
the data (every source's first row: its file and columns; a source too small for its split is
found by the split stage, in the run), a fixed test set (read and checked whole), the model and its
tokenizer, the tracking store, the output dir.
Each failure is a PipelineError that says what to do, in seconds rather than
after a 70 s network hang or halfway through a run.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from omegaconf import DictConfig

from pipeline import redact
from pipeline.errors import PipelineError
from pipeline.stages import docstrings, models, sources, test_sets, translations
from pipeline.tracking_uri import sqlite_path

TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")
_TIMEOUT_S = 5
_SQLITE_HEADER = b"SQLite format 3\x00"
_SQLITE_HEADER_SIZE = 100


def check_model(cfg: DictConfig) -> None:
    """The base model can be had: a package, an existing directory, or a reachable hub id."""
    if cfg.kind != "hub" or os.path.isdir(cfg.id):
        return
    if cfg.id.startswith(("/", ".", "~")):
        raise PipelineError(f"model.id={cfg.id!r}: no such model directory.")
    if "://" in cfg.id:
        raise PipelineError(f"model.id={cfg.id!r} is not a hub id (owner/name) or a local model directory: "
                            "download the model and give its directory.")
    from huggingface_hub import try_to_load_from_cache

    if try_to_load_from_cache(cfg.id, "modules.json") is not None:
        return
    hint = ("Use model=minilm or model=static (offline), or a local directory "
            "(model.id=/path/to/model).")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise PipelineError(f"model.id={cfg.id!r} is a hub id, but HF_HUB_OFFLINE=1 and it is not "
                            f"in the local Hugging Face cache. {hint} Online, set HF_HUB_OFFLINE=0.")
    from huggingface_hub import model_info

    try:
        model_info(cfg.id, timeout=_TIMEOUT_S)
    except Exception as exc:  # unreachable hub, unknown id, gated repo
        raise PipelineError(f"model.id={cfg.id!r} could not be found on the Hugging Face hub "
                            f"({type(exc).__name__}). Offline? {hint}") from exc


def _check_sqlite(uri: str, shown: str) -> None:
    """An existing sqlite store file must be an SQLite database, whole, that this process can write
    (sqlite writes a journal beside it): never overwrite something else, never start a run that could
    not be recorded."""
    path = sqlite_path(uri)
    if path is None or not path.exists():
        return
    if path.is_dir():
        raise PipelineError(f"mlflow.tracking_uri={shown!r}: {path} is a directory, not an SQLite file. "
                            "Point the URI (or MLFLOW_TRACKING_URI) at a file.")
    with path.open("rb") as handle:
        head = handle.read(_SQLITE_HEADER_SIZE)
    if head and head[:len(_SQLITE_HEADER)] != _SQLITE_HEADER:
        raise PipelineError(f"mlflow.tracking_uri={shown!r}: {path} exists but is not an SQLite database "
                            f"(it starts with {head[:16]!r}); the pipeline will not overwrite it. Move it "
                            "away, or set MLFLOW_TRACKING_URI to another store.")
    if head and _truncated(head, path.stat().st_size):
        raise PipelineError(f"mlflow.tracking_uri={shown!r}: {path} is truncated ({path.stat().st_size:,} bytes, "
                            "shorter than its header says: a copy cut short, or a full disk); it was left as it "
                            "is. Restore a whole copy, or move it away (the next run starts a new store), or set "
                            "MLFLOW_TRACKING_URI to another store.")
    for needed in (path, path.parent):
        if not os.access(needed, os.W_OK):
            raise PipelineError(f"mlflow.tracking_uri={shown!r}: {needed} is read-only, and every run writes to "
                                "the store (sqlite also writes a journal beside the file). Make the file and its "
                                "folder writable, or set MLFLOW_TRACKING_URI to a store you can write.")


def _truncated(header: bytes, size: int) -> bool:
    """Whether an SQLite file is shorter than the page count its header records (which is valid
    when the two change counters agree: https://www.sqlite.org/fileformat.html)."""
    if len(header) < _SQLITE_HEADER_SIZE:
        return True
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    return header[24:28] == header[92:96] and size < page_size * pages


def _check_driver(uri: str, shown: str) -> None:
    """A database URI's Python driver is installed (SQLAlchemy imports it only when connecting)."""
    from sqlalchemy.engine import make_url

    try:
        make_url(uri).get_dialect().import_dbapi()
    except ImportError as exc:
        raise PipelineError(f"mlflow.tracking_uri={shown!r}: the database driver is not installed "
                            f"({exc}). Install it (postgresql: pip install 'psycopg[binary]'; mysql: pip install "
                            "mysqlclient, or name another driver as in mysql+pymysql://), or unset "
                            "MLFLOW_TRACKING_URI to use the local sqlite store.") from None
    except Exception as exc:  # a URI SQLAlchemy cannot parse, an unknown dialect
        raise PipelineError(f"mlflow.tracking_uri={shown!r}: not a database URI SQLAlchemy can use "
                            f"({exc}).") from None


def _check_server(uri: str, shown: str, timeout_s: float) -> None:
    """The server answers /health within the timeout; a user:password in the URI is sent as basic
    auth (urllib does not take it from the URL), never printed."""
    parts = urlsplit(uri)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    request = urllib.request.Request(urlunsplit(parts._replace(netloc=netloc)).rstrip("/") + "/health")
    if parts.username is not None:
        token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode())
        request.add_header("Authorization", f"Basic {token.decode()}")
    try:
        urllib.request.urlopen(request, timeout=timeout_s).close()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise PipelineError(
            f"mlflow.tracking_uri={shown!r}: the MLflow server does not answer within {timeout_s:g} s "
            f"({exc}). Start it (mlflow server --host 127.0.0.1 --port 5000), or unset "
            "MLFLOW_TRACKING_URI to use the local sqlite store.") from None


def check_tracking(uri: str, timeout_s: float = _TIMEOUT_S) -> None:
    """The tracking URI has a known scheme and its store can be used: an sqlite file that is one,
    a database driver that is installed, a server that answers."""
    shown = redact.uri(uri)
    scheme, _, driver = urlsplit(uri).scheme.partition("+")
    if scheme not in TRACKING_SCHEMES:
        raise PipelineError(
            f"mlflow.tracking_uri={shown!r}: unknown scheme {scheme!r}; allowed: "
            f"{', '.join(TRACKING_SCHEMES)} (e.g. sqlite:////abs/path/mlflow.db or "
            "http://127.0.0.1:5000). MLflow >= 3.7 no longer accepts a ./mlruns file store.")
    if scheme == "sqlite":
        _check_sqlite(uri, shown)
    elif scheme in ("postgresql", "mysql", "mssql"):
        _check_driver(uri, shown)
    elif scheme in ("http", "https"):
        _check_server(uri, shown, timeout_s)


def check_writable(folder: str, key: str = "paths.outputs_dir") -> None:
    """A folder the run writes to (`key` sets it; runs, cache and the sqlite store all go under
    paths.outputs_dir, each in a folder of its own) can be made and written: probed in it, or in the
    nearest folder above it that exists, which is left as it was."""
    path = Path(folder).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        where = f"{key}={folder!r}" if existing == path else f"{key}={folder!r}: {existing}"
        raise PipelineError(f"{where} is a file, and the pipeline needs a folder there: move the file away, "
                            f"or set {key}=/another/dir (or HNPIPE_ROOT).")
    try:
        probe = existing / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise PipelineError(f"{key}={folder!r} is not writable ({exc.strerror}: {existing}): make it writable, "
                            f"or choose another with {key}=/writable/dir or HNPIPE_ROOT.") from exc


def check_source(cfg: DictConfig, group_column: str | None) -> None:
    """A data source can be read and has the columns the config names, from its first row (a hub
    dataset's can only be known once it loads)."""
    if cfg.source == "files":
        sources.check(cfg, group_column)
    elif cfg.source in ("docstrings", "translations"):
        if cfg.source == "docstrings":
            docstrings.source_roots(list(cfg.packages))
        else:
            translations.fingerprint(cfg.languages[0], list(cfg.catalogs))  # the catalogs have the language
        if group_column not in (None, "anchor", "positive"):
            raise PipelineError(f"split.group_column={group_column!r}: no such column; the {cfg.source} "
                                "data has columns ['anchor', 'positive'].")


def check_data(cfg: DictConfig) -> None:
    """Every source of the run, from its first row (check_source). A message about a source of
    several names it."""
    from pipeline.result import RunResult
    from pipeline.stages.stage import Context

    for part in Context(cfg, None, RunResult(Path(cfg.paths.cache_dir))).sources().values():
        with part.naming_source():
            check_source(part.cfg.data, cfg.split.group_column)


def preflight(cfg: DictConfig) -> None:
    """Run every check (the outputs dir first: a Hydra callback checks it too, before Hydra makes
    the run dir)."""
    check_writable(cfg.paths.outputs_dir)
    check_writable(cfg.paths.cache_dir, "paths.cache_dir")
    if cfg.mlflow.tracking_uri.startswith("sqlite:"):  # its artifacts go there (a server keeps its own)
        check_writable(cfg.mlflow.artifact_root, "mlflow.artifact_root")
    if cfg.eval.test is not None:
        test_sets.check(cfg.eval.test)
    check_model(cfg.model)
    models.check_tokenizer(cfg.model)
    check_tracking(cfg.mlflow.tracking_uri)
    check_data(cfg)
