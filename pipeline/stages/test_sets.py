"""Fixed test sets (eval.test=PATH): every run scored on the same queries, chosen by the user.

Two layouts. A BEIR / MTEB folder: corpus.jsonl ({_id, title, text}), queries.jsonl ({_id, text})
and qrels/test.tsv (header query-id, corpus-id, score; score > 0 is relevant), documents embedded
as "title text" as BEIR does, and only queries with a relevant document kept, as BEIR does. Or a
pairs file (jsonl / csv / parquet with anchor and positive columns, as data=files), where repeated
anchors are one query with all their positives relevant: scored as separate queries, each would
count the others' positives as misses. `check` validates without a model, so a bad test set
stops the run before any model loads.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

KEY = "eval.test"
BEIR_FILES = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")
QRELS_HEADER = ("query-id", "corpus-id", "score")
PAIRS_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclass(frozen=True)
class RetrievalSet:
    """Queries and corpus by id, and each query's relevant corpus ids (never empty)."""

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]

    def sizes(self) -> dict[str, int]:
        return {"queries": len(self.queries), "corpus": len(self.corpus),
                "relevant": sum(len(docs) for docs in self.relevant.values())}

    def fingerprint(self) -> str:
        """Hash of queries, corpus and judgements: runs with equal fingerprints scored the same
        queries against the same corpus, so the report may compare them query by query."""
        content = [self.queries, self.corpus, {qid: sorted(docs) for qid, docs in self.relevant.items()}]
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def as_rows(self):
        """A datasets.Dataset with one row per query: its id, its text and its relevant documents'
        texts (what the run records as its test data)."""
        import datasets

        ids = list(self.queries)
        return datasets.Dataset.from_dict({
            "query_id": ids, "query": [self.queries[qid] for qid in ids],
            "relevant": [[self.corpus[doc] for doc in sorted(self.relevant[qid])] for qid in ids]})


def file_fingerprint(path: str | Path) -> str:
    """Hash of the test set's files (a BEIR folder's three, or the pairs file), without parsing
    them: the base model's cached scores are keyed by it."""
    path = Path(path)
    files = [path / name for name in BEIR_FILES] if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:16]


def leaks(test_set: RetrievalSet, train_ds, dev_ds) -> dict[str, int]:
    """What the test set shares with the training data, by exact text: `split/leaked_queries`
    (test queries that are also train anchors) and `split/leaked_positives` (texts that are
    positives in more than one of train, dev and the test set's relevant documents). A random
    split grouped by positive keeps the second at 0, not the first: an anchor can come with
    two positives that land in different splits."""
    relevant = {test_set.corpus[doc] for docs in test_set.relevant.values() for doc in docs}
    train, dev = set(train_ds["positive"]), set(dev_ds["positive"])
    return {"split/leaked_queries": len(set(test_set.queries.values()) & set(train_ds["anchor"])),
            "split/leaked_positives": len((train & dev) | (train & relevant) | (dev & relevant))}


def shared_texts(test_set: RetrievalSet, texts: set[str]) -> int:
    """How many of the test set's queries and relevant documents are among `texts`."""
    relevant = {test_set.corpus[doc] for docs in test_set.relevant.values() for doc in docs}
    return len(set(test_set.queries.values()) & texts) + len(relevant & texts)


def check(path: str | Path, anchor_column: str = "anchor",
          positive_column: str = "positive") -> dict[str, int]:
    """Read and validate the test set without any model; its sizes, or a PipelineError."""
    return load(path, anchor_column, positive_column).sizes()


def load(path: str | Path, anchor_column: str = "anchor", positive_column: str = "positive",
         distractors: Iterable[str] = ()) -> RetrievalSet:
    """The test set at `path`: a BEIR / MTEB folder (its own corpus), or a pairs file (its
    positives plus `distractors`, which a BEIR folder does not take)."""
    if not str(path).strip():
        raise _error(path, "empty; give a BEIR / MTEB folder or a pairs file, or null for the split's "
                             "test part")
    path = Path(path)
    try:
        return _load(path, anchor_column, positive_column, distractors)
    except UnicodeDecodeError as exc:
        raise _error(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _load(path: Path, anchor_column: str, positive_column: str, distractors: Iterable[str]) -> RetrievalSet:
    if path.is_dir():
        return _load_beir(path)
    if not path.exists():
        raise _error(path, "no such file or folder")
    if path.suffix.lower() not in PAIRS_SUFFIXES:
        raise _error(path, f"unknown format {path.suffix!r}; a test set is a BEIR / MTEB folder "
                           f"({', '.join(BEIR_FILES)}) or a pairs file ({', '.join(PAIRS_SUFFIXES)})")
    pairs = list(_read_pairs(path, anchor_column, positive_column))
    if not pairs:
        raise _error(path, "no rows")
    return from_pairs(pairs, distractors)


def from_pairs(pairs: Iterable[tuple[str, str]], distractors: Iterable[str] = ()) -> RetrievalSet:
    """(anchor, positive) pairs as queries: one per distinct anchor, all its positives relevant.

    The corpus is the distinct positives, then the distractors that are not already in it; ids
    are q0, q1, ... and d0, d1, ... in order of first appearance. For a random split's test rows.
    """
    query_ids: dict[str, str] = {}
    doc_ids: dict[str, str] = {}
    relevant: dict[str, set[str]] = {}
    for anchor, positive in pairs:
        qid = query_ids.setdefault(anchor, f"q{len(query_ids)}")
        relevant.setdefault(qid, set()).add(doc_ids.setdefault(positive, f"d{len(doc_ids)}"))
    for text in distractors:
        doc_ids.setdefault(text, f"d{len(doc_ids)}")
    return RetrievalSet({qid: text for text, qid in query_ids.items()},
                        {did: text for text, did in doc_ids.items()}, relevant)


def _error(path: str | Path, what: str) -> PipelineError:
    return PipelineError(f"{KEY}={str(path)!r}: {what}.")


def _load_beir(folder: Path) -> RetrievalSet:
    missing = [name for name in BEIR_FILES if not (folder / name).is_file()]
    if missing:
        raise _error(folder, f"a folder, but not a BEIR / MTEB test set: missing {', '.join(missing)} "
                             f"(it needs {', '.join(BEIR_FILES)})")
    corpus = {doc_id: f"{record.get('title') or ''} {record['text']}".strip()
              for doc_id, record in _read_records(folder, "corpus.jsonl")}
    queries = {query_id: record["text"] for query_id, record in _read_records(folder, "queries.jsonl")}
    for name, items in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        if not items:
            raise _error(folder, f"{name} is empty")
    relevant: dict[str, set[str]] = {}
    unknown: dict[str, set[str]] = {"queries.jsonl": set(), "corpus.jsonl": set()}
    for query_id, doc_id, score in _read_qrels(folder):
        if query_id not in queries:
            unknown["queries.jsonl"].add(query_id)
        if doc_id not in corpus:
            unknown["corpus.jsonl"].add(doc_id)
        if score > 0:
            relevant.setdefault(query_id, set()).add(doc_id)
    problems = [f"{len(ids)} ids that are not in {name} (e.g. {', '.join(map(repr, sorted(ids)[:3]))})"
                for name, ids in unknown.items() if ids]
    if problems:
        raise _error(folder, "qrels/test.tsv names " + " and ".join(problems))
    if not relevant:
        raise _error(folder, "qrels/test.tsv has no relevant pair (no score > 0)")
    return RetrievalSet({qid: text for qid, text in queries.items() if qid in relevant}, corpus, relevant)


def _read_records(folder: Path, name: str) -> Iterator[tuple[str, dict]]:
    """(_id, record) per non-blank line of a BEIR jsonl file, each checked."""
    seen = set()
    with (folder / name).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{name} line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _error(folder, f"{where} is not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict) or "_id" not in record:
                raise _error(folder, f"{where} has no '_id'")
            if not isinstance(record.get("text"), str):
                raise _error(folder, f"{where} has no 'text' string")
            if not isinstance(record.get("title") or "", str):
                raise _error(folder, f"{where}: 'title' is not a string")
            record_id = str(record["_id"])
            if record_id in seen:
                raise _error(folder, f"{where} repeats _id {record_id!r}")
            seen.add(record_id)
            yield record_id, record


def _read_qrels(folder: Path) -> Iterator[tuple[str, str, float]]:
    with (folder / "qrels" / "test.tsv").open(encoding="utf-8", newline="") as lines:
        rows = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None)
        if header is None or tuple(field.strip() for field in header) != QRELS_HEADER:
            raise _error(folder, f"qrels/test.tsv line 1 must be the header {chr(9).join(QRELS_HEADER)!r} "
                                 f"(tab-separated), found {chr(9).join(header or [])!r}")
        for fields in rows:
            if not fields:
                continue
            where = f"qrels/test.tsv line {rows.line_num}"
            if len(fields) != 3:
                raise _error(folder, f"{where} has {len(fields)} tab-separated fields, not 3 "
                                     f"(query-id, corpus-id, score)")
            try:
                score = float(fields[2])
            except ValueError:
                raise _error(folder, f"{where}: score {fields[2]!r} is not a number") from None
            yield fields[0], fields[1], score


def _read_pairs(path: Path, anchor_column: str, positive_column: str) -> Iterator[tuple[str, str]]:
    """(anchor, positive) per row, each a non-blank string; rows are numbered as the file counts."""
    for where, row in _rows(path):
        missing = [column for column in (anchor_column, positive_column) if column not in row]
        if missing:
            raise _error(path, f"{where} has no {' or '.join(map(repr, missing))} column; "
                               f"its columns are {list(row)}")
        values = row[anchor_column], row[positive_column]
        for column, value in zip((anchor_column, positive_column), values):
            if not isinstance(value, str) or not value.strip():
                raise _error(path, f"{where}: {column!r} is {value!r}, not a non-blank text")
        yield values


def _rows(path: Path) -> Iterator[tuple[str, dict]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet

        try:
            table = pyarrow.parquet.read_table(path)
        except Exception as exc:  # not parquet, or truncated: arrow says which
            raise _error(path, f"could not be read as parquet: {exc}") from exc
        yield from ((f"row {number}", row) for number, row in enumerate(table.to_pylist(), 1))
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as lines:
            rows = csv.DictReader(lines)
            for row in rows:
                yield f"line {rows.line_num}", row
    else:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise _error(path, f"line {number} is not valid JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise _error(path, f"line {number} is not a JSON object")
                yield f"line {number}", row
