"""Where (anchor, positive) pairs come from: docstrings, a local file, a hub dataset, or the
translations of pinned packages; and a run's data as named sources (`named`).

A run has one source (data=docstrings, files, hf), or several: one per language (data=
translations) or any mix (data=multi). Each source is split, mined, batched and scored on its
own; `named` gives each source's config, the one the stages see as `cfg.data` for it.

Local files are read here, not through `datasets`, so that every problem names
its line: a byte that is not UTF-8, a line that is not JSON, a cell that is not
text. `check` reads only a file's first row, so preflight refuses a bad file or
column mapping in seconds; `load_pairs` reads everything for the split stage.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from pipeline.cache import StageCache, stage_key
from pipeline.config.schema import DATA
from pipeline.errors import PipelineError
from pipeline.stages import docstrings, translations

FORMATS = (".jsonl", ".json", ".csv", ".parquet")
HARVESTED = ("docstrings", "translations")  # sources read from installed files, kept by `harvested`
HARVEST_VERSION = "1"  # of the harvest cache entry (its code: docstrings.harvest, translations.harvest)


def _no_file(cfg: DictConfig) -> PipelineError:
    """A path that is not a file: say what is there instead (nothing, or a folder)."""
    if Path(cfg.path).is_dir():
        return PipelineError(f"data.path={cfg.path!r} is a directory, not a data file: name one file in it "
                             f"({', '.join(FORMATS)}), or use data=multi for several.")
    return PipelineError(f"data.path={cfg.path!r}: no such file.")


def _no_column(role: str, column: str, columns: list[str]) -> PipelineError:
    return PipelineError(f"data.{role}_column={column!r}: no such column; the data has "
                         f"columns {columns}. Set data.{role}_column to one of them.")


def _not_text(role: str, column: str, value: object, where: str = "") -> PipelineError:
    at = f" ({where}: {value!r})" if where else f" (e.g. {value!r})"
    return PipelineError(f"data.{role}_column={column!r} holds {type(value).__name__} values{at}; "
                         "it must hold text.")


def _json_line(where: str, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not valid JSON ({exc.msg}): {line.strip()[:80]!r}") from None
    if not isinstance(row, dict):
        raise ValueError(f"{where} is not a JSON object with named columns: {line.strip()[:80]!r}")
    return row


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file; a byte that is not UTF-8 names its line. A
    byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"line {number} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                                 f"column {exc.start + 1}); save the file as UTF-8") from None


def read_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(where, row) for each row of a jsonl / json / csv / parquet file, `where` naming its line
    (or row, or array item) for messages; ValueError, saying where, for what cannot be read.

    A .json file is a JSON array of objects or, like .jsonl, one object per line. In a CSV file
    an empty cell is an empty string (the split stage drops blank pairs)."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"unknown format {suffix!r}; allowed suffixes: {', '.join(FORMATS)}")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow's errors name the problem, not a type worth catching apart
            raise ValueError(f"not a readable parquet file ({exc})") from None
        for number, row in enumerate(table.to_pylist(), 1):
            yield f"row {number}", row
        return
    lines = _text_lines(path)
    if suffix == ".csv":
        yield from _csv_rows(lines)
        return
    for number, line in lines:
        if not line.strip():
            continue
        if suffix == ".json" and line.lstrip().startswith("["):  # a JSON array, not JSON lines
            yield from _json_array(line + "".join(rest for _, rest in lines), number)
            return
        yield f"line {number}", _json_line(f"line {number}", line)


def _json_array(content: str, first_line: int) -> Iterator[tuple[str, dict]]:
    try:
        items = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {first_line + exc.lineno - 1} is not valid JSON ({exc.msg})") from None
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ValueError(f"array item {number} is not a JSON object with named columns: {str(item)[:80]!r}")
        yield f"array item {number}", item


def _csv_rows(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[str, dict]]:
    numbers: list[int] = []

    def text():
        for number, line in lines:
            numbers.append(number)
            yield line

    reader = csv.reader(text())
    header = next(reader, None)
    if header is None:
        return
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        yield f"line {numbers[-1]}", {name: cells[i] if i < len(cells) else "" for i, name in enumerate(header)}


def _columns(path: Path) -> list[str]:
    """A file's column names, read from its header or first row."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return [field.name for field in pq.read_schema(path)]
    if path.suffix.lower() == ".csv":
        return next(csv.reader(line for _, line in _text_lines(path)), [])
    return list(next(read_rows(path), ("", {}))[1])


def check(cfg: DictConfig, group_column: str | None = None) -> None:
    """A data=files source exists, has rows and has the mapped columns (and the split's group
    column), reading no more than its first row: seconds, whatever the file's size."""
    path = Path(cfg.path)
    if not path.is_file():
        raise _no_file(cfg)
    try:
        columns = _columns(path)
        first = next(read_rows(path), None)
    except (ValueError, OSError) as exc:
        raise PipelineError(f"data.path={cfg.path!r}: {exc}.") from None
    if first is None:
        only = " (only a header)" if columns else ""
        raise PipelineError(f"data.path={cfg.path!r} holds no rows{only}: the data is empty.")
    for role in ("anchor", "positive"):
        column = cfg[f"{role}_column"]
        if column not in columns:
            raise _no_column(role, column, columns)
        sample = first[1][column]
        if sample is not None and not isinstance(sample, str):
            raise _not_text(role, column, sample, first[0])
    if group_column is not None and group_column not in columns:
        raise PipelineError(f"split.group_column={group_column!r}: no such column; the data has "
                            f"columns {columns}.")


def named(data_cfg: DictConfig) -> dict[str, DictConfig]:
    """The run's sources by name, each as the data config of one source: the run's own data for
    docstrings, files and hf (one source, named after its kind); one per language for
    translations (named after the language, `languages` holding just it); and for multi each
    included source with its kind's defaults filled in, and the run's max_rows where it sets
    none (a translations source of several languages gives one per language, named
    `<name>-<language>`)."""
    if data_cfg.source == "multi":
        found: dict[str, DictConfig] = {}
        for name in data_cfg.include or list(data_cfg.sources):
            node = data_cfg.sources[name]
            part = OmegaConf.merge(OmegaConf.structured(DATA[node.source]), node)
            assert isinstance(part, DictConfig)
            if part.max_rows is None:
                part.max_rows = data_cfg.max_rows
            views = named(part)
            for inner, view in views.items():
                found[name if len(views) == 1 else f"{name}-{inner}"] = view
        return found
    if data_cfg.source == "translations":
        views = {}
        for language in data_cfg.languages:
            view = data_cfg.copy()
            view.languages = [language]
            views[language] = view
        return views
    return {data_cfg.source: data_cfg}


def fingerprint(cfg: DictConfig) -> str:
    """What one source's data depends on beyond its config: file contents, or the environment."""
    if cfg.source == "docstrings":
        return docstrings.fingerprint(list(cfg.packages))
    if cfg.source == "translations":
        return translations.fingerprint(cfg.languages[0], list(cfg.catalogs))
    if cfg.source == "files":
        path = Path(cfg.path)
        if not path.is_file():
            raise _no_file(cfg)
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return ""  # hub datasets: path, name, split and revision are all in the config


def _hub_rows(cfg: DictConfig) -> Iterator[tuple[str, dict]]:
    import datasets

    try:
        ds = datasets.load_dataset(cfg.path, cfg.name, split=cfg.split, revision=cfg.revision)
    except Exception as exc:
        raise PipelineError(
            f"data.path={cfg.path!r} (name={cfg.name}, split={cfg.split}) could not be loaded "
            f"from the Hugging Face hub: {exc}. Offline, use data=docstrings or data=files."
        ) from exc
    for number, row in enumerate(ds, 1):
        yield f"row {number}", row


def _file_rows(cfg: DictConfig) -> Iterator[tuple[str, dict]]:
    try:
        yield from read_rows(Path(cfg.path))
    except (ValueError, OSError) as exc:
        raise PipelineError(f"data.path={cfg.path!r}: {exc}.") from None


def _harvest(cfg: DictConfig) -> list[dict]:
    if cfg.source == "translations":
        return translations.harvest(cfg.languages[0], list(cfg.catalogs), cfg.min_chars)
    return docstrings.harvest(list(cfg.packages), cfg.min_summary_words, cfg.min_body_chars, cfg.max_body_chars)


def harvested(cfg: DictConfig, cache: StageCache) -> list[dict]:
    """A harvested source's pairs, kept in the stage cache: harvesting the default docstrings
    takes 18 s on 2 cores, reading them back 0.02 s, so a process that splits the same source
    anew (other split settings or data.max_rows, a fresh run) skips it. Keyed, as the split is,
    by the harvest's settings and the source's fingerprint."""
    settings = ({"language": cfg.languages[0], "catalogs": list(cfg.catalogs), "min_chars": cfg.min_chars}
                if cfg.source == "translations" else
                {"packages": list(cfg.packages), "min_summary_words": cfg.min_summary_words,
                 "min_body_chars": cfg.min_body_chars, "max_body_chars": cfg.max_body_chars})
    key = stage_key(f"harvest-{cfg.source}", HARVEST_VERSION, settings, fingerprint=fingerprint(cfg))

    def build(out: Path) -> None:
        (out / "pairs.json").write_text(json.dumps(_harvest(cfg)))

    entry = cache.get_or_build("harvest", key, build)
    return json.loads((entry.path / "pairs.json").read_text())


def _rows(cfg: DictConfig, cache: StageCache) -> Iterator[tuple[str, dict]]:
    if cfg.source in HARVESTED:
        unit = "pair" if cfg.source == "translations" else "row"
        return ((f"{unit} {number}", pair) for number, pair in enumerate(harvested(cfg, cache), 1))
    if cfg.source == "files":
        return _file_rows(cfg)
    return _hub_rows(cfg)


def load_pairs(cfg: DictConfig, cache: StageCache) -> list[dict]:
    """Rows {anchor, positive, _extra: the whole source row} from the configured source, checked
    (a harvested source through `cache`, see harvested).

    A missing or empty cell is kept as "" (the split stage drops blank pairs, as documented);
    a cell of another type is an error naming its line."""
    wanted = {"anchor": cfg.get("anchor_column", "anchor"),
              "positive": cfg.get("positive_column", "positive")}
    rows: list[dict] = []
    for where, row in _rows(cfg, cache):
        if cfg.max_rows is not None and len(rows) >= cfg.max_rows:
            break
        pair = {}
        for role, column in wanted.items():
            if column not in row:
                raise _no_column(role, column, list(row))
            value = "" if row[column] is None else row[column]
            if not isinstance(value, str):
                raise _not_text(role, column, value, where)
            pair[role] = value
        rows.append(pair | {"_extra": row})
    return rows
