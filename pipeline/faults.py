"""Faults of the machine rather than of the input, met while a job or a sweep runs: a full disk,
an MLflow store that is locked, damaged or read-only, a folder that cannot be written or is a
file. `explain` turns one into the PipelineError the one error path prints (pipeline.errors.reported),
naming the path and what to do; the checks before a run (pipeline.preflight) catch most of them
earlier, these are what happens to a run under way.
"""

from __future__ import annotations

import errno

from pipeline import redact
from pipeline.errors import PipelineError
from pipeline.tracking_uri import sqlite_path

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DISK_FULL_WORDS = ("No space left on device", "File too large", "Disk quota exceeded", "database or disk is full")
_READ_ONLY = {errno.EACCES, errno.EPERM, errno.EROFS}
# sqlite's own words, as SQLAlchemy and MLflow pass them on, and what each means for the store.
_STORE_FAULTS = {
    "database is locked": "is locked by another writer (sqlite: database is locked): a process holds a write "
                          "transaction on it (an sqlite3 shell, a database browser, a run on another host over "
                          "NFS). Close that, or wait for it, and run again",
    "database disk image is malformed": "is damaged (sqlite: database disk image is malformed)",
    "file is not a database": "is damaged or not an SQLite database (sqlite: file is not a database)",
    "attempt to write a readonly database": "cannot be written (sqlite: attempt to write a readonly "
                                            "database): make the file and its folder writable",
    "unable to open database file": "cannot be opened (sqlite: unable to open database file): make the file "
                                    "and its folder readable and writable",
}
_DAMAGED_HINT = ("It was left as it is: restore a copy, or move it away (the next run starts a new store; "
                 "`sqlite3 FILE .recover` may save its runs), or point MLFLOW_TRACKING_URI at another store.")


def _chain(exc: BaseException):
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _store(tracking_uri: str) -> str:
    path = sqlite_path(tracking_uri)
    return str(path) if path is not None else redact.uri(tracking_uri)


def explain(exc: BaseException, tracking_uri: str, outputs_dir: str) -> PipelineError | None:
    """The message for a machine fault anywhere in `exc`'s causes, or None if it is none of them
    (then it is a bug, and its traceback is what helps)."""
    for seen in _chain(exc):
        text = redact.text(str(seen))
        store_fault = next((means for words, means in _STORE_FAULTS.items() if words in text), None)
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL or any(w in text for w in _DISK_FULL_WORDS):
            where = getattr(seen, "filename", None) or (_store(tracking_uri) if "database" in text else outputs_dir)
            return PipelineError(
                f"the disk refused a write to {where} ({text.splitlines()[0][:200]}): free space there, or "
                f"point paths.outputs_dir (or HNPIPE_ROOT, or MLFLOW_TRACKING_URI for the store) at a disk "
                "with room. Finished runs and cache entries are intact; the next run rebuilds what this one "
                "could not finish.")
        if store_fault is not None:
            hint = f" {_DAMAGED_HINT}" if "damaged" in store_fault else ""
            return PipelineError(f"the MLflow store {_store(tracking_uri)} {store_fault}.{hint}")
        if isinstance(seen, OSError) and seen.filename and seen.errno in _READ_ONLY:
            return PipelineError(f"{seen.filename} cannot be written ({seen.strerror}): make it writable, or "
                                 "point paths.outputs_dir (or HNPIPE_ROOT) at a folder you can write.")
        if isinstance(seen, (NotADirectoryError, FileExistsError)) and seen.filename:
            return PipelineError(f"{seen.filename}: a file is where the pipeline needs a folder ({seen.strerror}). "
                                 "Move the file away, or point paths.outputs_dir (or HNPIPE_ROOT) elsewhere.")
    return None
