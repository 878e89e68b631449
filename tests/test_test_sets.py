"""Fixed test sets: a BEIR folder scores the nDCG@10 computed by hand, pairs files group repeated
anchors into one query, and each broken test set stops with a message naming what is wrong."""

import json
import math

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.stages.retrieval_metrics import retrieval_scores
from pipeline.stages.test_sets import check, from_pairs, load

CORPUS = [{"_id": "a1", "title": "Sorting", "text": "sorted(iterable) returns a new list."},
          {"_id": "a2", "title": "", "text": "list.sort sorts in place."},
          {"_id": "b1", "text": "json.dumps serialises an object."},
          {"_id": "b2", "title": "JSON", "text": "json.dump writes to a file."},
          {"_id": "c1", "text": "os.walk yields directory trees."},
          {"_id": "c2", "text": "pathlib.Path.rglob finds files recursively."},
          {"_id": "x1", "text": "math.sqrt returns the square root."},
          {"_id": "x2", "text": "time.sleep suspends execution."}]
QUERIES = [{"_id": "qa", "text": "how to sort a list"}, {"_id": "qb", "text": "write json"},
           {"_id": "qc", "text": "walk a directory"}, {"_id": "qz", "text": "no judgements"}]
QRELS = [("qa", "a1", 1), ("qa", "a2", 1), ("qb", "b1", 2), ("qb", "b2", 1), ("qb", "x1", 0),
         ("qc", "c1", 1), ("qc", "c2", 1)]


def write_beir(folder, corpus=CORPUS, queries=QUERIES, qrels=QRELS, header="query-id\tcorpus-id\tscore"):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    lines = [header] + ["\t".join(map(str, row)) for row in qrels]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_beir_folder_loads_as_beir_reads_it(tmp_path):
    test_set = load(write_beir(tmp_path / "beir"))
    assert list(test_set.queries) == ["qa", "qb", "qc"]  # qz has no relevant document
    assert test_set.relevant == {"qa": {"a1", "a2"}, "qb": {"b1", "b2"}, "qc": {"c1", "c2"}}  # x1 scored 0
    assert test_set.corpus["a1"] == "Sorting sorted(iterable) returns a new list."
    assert test_set.corpus["a2"] == "list.sort sorts in place."
    assert test_set.corpus["b1"] == "json.dumps serialises an object."
    assert check(tmp_path / "beir") == {"queries": 3, "corpus": 8, "relevant": 6}


def test_beir_folder_scores_the_ndcg_computed_by_hand(tmp_path):
    test_set = load(write_beir(tmp_path / "beir"))
    doc_ids = list(test_set.corpus)  # a1 a2 b1 b2 c1 c2 x1 x2: each document its own axis
    wanted = {"qa": {"a1": 0.9, "x1": 0.8, "a2": 0.7},  # relevant at ranks 1 and 3
              "qb": {"x1": 0.9, "b1": 0.8, "b2": 0.7},  # x1 was judged 0: ranks 2 and 3
              "qc": {"x1": 0.9, "x2": 0.8, "c1": 0.7, "c2": 0.01}}  # ranks 3 and 8
    queries = torch.tensor([[wanted[q].get(d, 0.1 - 0.01 * i) for i, d in enumerate(doc_ids)]
                            for q in test_set.queries])
    scores = retrieval_scores(queries, torch.eye(len(doc_ids)), list(test_set.queries), doc_ids,
                              test_set.relevant).table()
    ideal = 1 + 1 / math.log2(3)  # two relevant documents at ranks 1 and 2
    by_hand = {"qa": (1 + 1 / math.log2(4)) / ideal,
               "qb": (1 / math.log2(3) + 1 / math.log2(4)) / ideal,
               "qc": (1 / math.log2(4) + 1 / math.log2(9)) / ideal}
    assert {q: s["ndcg_at_10"] for q, s in scores.items()} == pytest.approx(by_hand)
    assert scores["qc"]["recall_at_1"] == 0 and scores["qc"]["mrr_at_10"] == pytest.approx(1 / 3)


def _corpus_with_bad_line(folder):
    write_beir(folder)
    with (folder / "corpus.jsonl").open("a") as f:
        f.write('{"_id": "y1", "text": "cut off\n')


def _qrels_with_short_line(folder):
    write_beir(folder, qrels=QRELS + [("qc", "x2")])


@pytest.mark.parametrize("make, message", [
    (lambda f: None, "no such file or folder"),
    (lambda f: f.mkdir(), "a folder, but not a BEIR / MTEB test set: missing corpus.jsonl, queries.jsonl, "
                          "qrels/test.tsv"),
    (lambda f: (write_beir(f), (f / "queries.jsonl").unlink()), "missing queries.jsonl"),
    (lambda f: write_beir(f, qrels=QRELS + [("qa", "zz9", 1), ("qq", "zz1", 1)]),
     r"qrels/test.tsv names 1 ids that are not in queries.jsonl \(e.g. 'qq'\) and 2 ids that are not "
     r"in corpus.jsonl \(e.g. 'zz1', 'zz9'\)"),
    (_corpus_with_bad_line, "corpus.jsonl line 9 is not valid JSON"),
    (lambda f: write_beir(f, queries=QUERIES + [{"id": "qy", "text": "no _id"}]),
     "queries.jsonl line 5 has no '_id'"),
    (lambda f: write_beir(f, corpus=CORPUS + [{"_id": "a1", "text": "again"}]),
     "corpus.jsonl line 9 repeats _id 'a1'"),
    (_qrels_with_short_line, "qrels/test.tsv line 9 has 2 tab-separated fields, not 3"),
    (lambda f: write_beir(f, qrels=[("qa", "a1", "high")]),
     "qrels/test.tsv line 2: score 'high' is not a number"),
    (lambda f: write_beir(f, header="qa\ta1\t1"), "qrels/test.tsv line 1 must be the header"),
    (lambda f: write_beir(f, corpus=[], qrels=[]), "corpus.jsonl is empty"),
    (lambda f: write_beir(f, qrels=[("qa", "a1", 0)]), r"no relevant pair \(no score > 0\)"),
])
def test_each_broken_beir_folder_names_what_is_wrong(tmp_path, make, message):
    folder = tmp_path / "beir"
    make(folder)
    with pytest.raises(PipelineError, match=message) as caught:
        check(folder)
    assert str(caught.value).startswith(f"eval.test={str(folder)!r}: ")


def _write_pairs(path, rows):
    if path.suffix == ".parquet":
        import pyarrow
        import pyarrow.parquet

        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    elif path.suffix == ".csv":
        import csv

        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_repeated_anchors_in_a_pairs_file_are_one_query_with_all_their_positives(tmp_path, suffix):
    rows = [{"question": "sort a list", "answer": "sorted()"},
            {"question": "write json", "answer": "json.dump"},
            {"question": "sort a list", "answer": "list.sort"},
            {"question": "sort a list", "answer": "sorted()"}]
    test_set = load(_write_pairs(tmp_path / f"pairs{suffix}", rows), "question", "answer")
    assert test_set.queries == {"q0": "sort a list", "q1": "write json"}
    assert test_set.corpus == {"d0": "sorted()", "d1": "json.dump", "d2": "list.sort"}
    assert test_set.relevant == {"q0": {"d0", "d2"}, "q1": {"d1"}}


@pytest.mark.parametrize("name, rows, message", [
    ("pairs.jsonl", [{"anchor": "a", "answer": "b"}],
     r"line 1 has no 'positive' column; its columns are \['anchor', 'answer'\]"),
    ("pairs.csv", [{"anchor": "a", "positive": "b"}, {"anchor": " ", "positive": "c"}],
     "line 3: 'anchor' is ' ', not a non-blank text"),
    ("pairs.parquet", [{"anchor": "a", "positive": "b"}, {"anchor": "c", "positive": None}],
     "row 2: 'positive' is None"),
    ("pairs.txt", [{"anchor": "a", "positive": "b"}], "unknown format '.txt'"),
])
def test_each_broken_pairs_file_names_what_is_wrong(tmp_path, name, rows, message):
    path = _write_pairs(tmp_path / name, rows)
    with pytest.raises(PipelineError, match=message):
        check(path)


def test_empty_or_malformed_jsonl_pairs_files_are_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(PipelineError, match="no rows"):
        check(empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"anchor": "a", "positive": "b"}\n["a", "b"]\n')
    with pytest.raises(PipelineError, match="line 2 is not a JSON object"):
        check(broken)


def test_a_random_splits_test_rows_group_by_anchor_and_take_distractors():
    test_set = from_pairs([("sort", "sorted()"), ("sort", "list.sort"), ("dump", "json.dump")],
                          distractors=["math.sqrt", "sorted()"])
    assert test_set.relevant == {"q0": {"d0", "d1"}, "q1": {"d2"}}
    assert test_set.corpus == {"d0": "sorted()", "d1": "list.sort", "d2": "json.dump", "d3": "math.sqrt"}
