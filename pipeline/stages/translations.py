"""Multilingual data: English -> language L pairs harvested from gettext catalogs.

A multilingual static model is trained on parallel text, one source per language,
so that in-batch negatives stay within one language. Parallel text available
offline on every machine that runs the project: the gettext catalogs (`.mo`)
shipped inside pinned PyPI packages. The defaults are Trac's (real UI and
configuration sentences, median ~25 characters) and Django's (~700-780 short UI
strings in ~100 languages); both are in requirements.lock, so every machine has
the same files. Debian's /usr/share/locale is not used: what is installed there
differs between machines.

Catalogs are read with a small `.mo` reader (below), never by importing the
package, so the pairs depend only on the files on disk. docs/multilingual-data.md
has the measured counts per language.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
import struct
from pathlib import Path

from pipeline.config.schema import CATALOGS as DEFAULT_CATALOGS
from pipeline.errors import PipelineError, refused

# Bumped when the rules below change what a harvest yields, so cached data is not reused.
_RULES_VERSION = 1

# Django names Chinese by script (zh_Hans), Trac and pycountry by region (zh_CN): one source each.
_ALIASES = {"zh_Hans": "zh_CN", "zh_Hant": "zh_TW"}
_MO_MAGIC = 0x950412DE
# printf-style (%s, %(name)s, %%), str.format ({0}, {name}) and ${name} placeholders.
_PLACEHOLDER = re.compile(r"%(\([^)]*\))?[-#0 +]*(\d+|\*)?(\.\d+)?[a-zA-Z%]|\$?\{[^{}]*\}")
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")
_LETTER = re.compile(r"[^\W\d_]")


def _package_dir(name: str) -> Path:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a dotted name whose parent is missing, an empty name
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(f"data.catalogs: {name!r} is not an installed package (a package "
                            "directory with gettext catalogs, <language>/LC_MESSAGES/*.mo); "
                            "remove it or install it.")
    return Path(list(spec.submodule_search_locations)[0])


def _catalog_files(catalogs: list[str] | tuple[str, ...] | None) -> list[tuple[str, str, Path, Path]]:
    """(language, package, package directory, .mo file) of every catalog, in a stable order:
    packages as listed, files sorted by path."""
    catalogs = list(DEFAULT_CATALOGS if catalogs is None else catalogs)
    if not catalogs:
        raise refused("data.catalogs", catalogs, "a non-empty list of installed packages that ship "
                      "gettext catalogs", f"e.g. {list(DEFAULT_CATALOGS)}")
    files = []
    for name in catalogs:
        root = _package_dir(name)
        found = [(_ALIASES.get(path.parent.parent.name, path.parent.parent.name), name, root, path)
                 for path in sorted(root.rglob("*.mo")) if path.parent.name == "LC_MESSAGES"]
        if not found:
            raise PipelineError(f"data.catalogs: {name!r} ships no gettext catalogs "
                                f"(<language>/LC_MESSAGES/*.mo under {root}); remove it.")
        files.extend(found)
    return files


def languages(catalogs: list[str] | None = None) -> list[str]:
    """The languages at least one of the catalogs translates into, sorted (some have few pairs:
    see docs/multilingual-data.md, or harvest one to count)."""
    return sorted({language for language, *_ in _catalog_files(catalogs)})


def _files_for(language: str, catalogs: list[str] | None) -> list[tuple[str, Path, Path]]:
    files = _catalog_files(catalogs)
    chosen = [(name, root, path) for lang, name, root, path in files if lang == language]
    if not chosen:
        available = sorted({lang for lang, *_ in files})
        raise PipelineError(f"data.languages: {language!r} has no translations in "
                            f"data.catalogs={list(DEFAULT_CATALOGS if catalogs is None else catalogs)}; "
                            f"available: {', '.join(available)}.")
    return chosen


def _version(package: str) -> str:
    """The installed version of the distribution named like the package (Trac for trac), or
    'unversioned' (a package of no distribution of its name: the file digests still tell)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unversioned"


def fingerprint(language: str, catalogs: list[str] | None = None) -> str:
    """What the harvest depends on besides its config: the packages' versions, and the path,
    size and SHA-256 of each catalog file it reads (a language's ~15 files, ~0.5 MB: a
    millisecond), and the version of this module's rules."""
    chosen = _files_for(language, catalogs)
    parts = [f"rules={_RULES_VERSION}"]
    for name in dict.fromkeys(name for name, _, _ in chosen):
        parts.append(f"{name}={_version(name)}")
    for _, _, path in chosen:
        data = path.read_bytes()
        parts.append(f"{path}:{len(data)}:{hashlib.sha256(data).hexdigest()}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def read_mo(path: Path) -> list[tuple[str, str]]:
    """(msgid, msgstr) of a compiled gettext catalog, in file order.

    A context (msgctxt\\x04msgid) is stripped; of a plural entry only the singular msgid and the
    first translation are kept; the header (empty msgid) is skipped. Text is decoded with the
    catalog's declared charset (UTF-8 if none), undecodable bytes replaced: unlike
    gettext.GNUTranslations, a catalog in another charset without a header does not fail."""
    data = path.read_bytes()
    for order in "<>":
        if len(data) >= 20 and struct.unpack(order + "I", data[:4])[0] == _MO_MAGIC:
            break
    else:
        raise PipelineError(f"data.catalogs: {path} is not a gettext .mo file (bad magic number).")
    count, originals, translations = struct.unpack(order + "4x3I", data[4:20])

    def table(offset: int) -> list[bytes]:
        entries = struct.unpack(f"{order}{2 * count}I", data[offset:offset + 8 * count])
        return [data[start:start + length] for length, start in zip(entries[::2], entries[1::2])]

    raw = list(zip(table(originals), table(translations)))
    charset = "utf-8"
    for msgid, msgstr in raw:
        if msgid == b"":
            match = re.search(rb"charset=([-\w]+)", msgstr)
            if match:
                charset = match.group(1).decode("ascii")
    try:
        "".encode(charset)
    except LookupError:
        charset = "utf-8"
    pairs = []
    for msgid, msgstr in raw:
        source = msgid.split(b"\x00")[0].decode(charset, "replace").split("\x04")[-1]
        if source:
            pairs.append((source, msgstr.split(b"\x00")[0].decode(charset, "replace")))
    return pairs


def _clean(text: str) -> str:
    """Markup tags removed (markup is not language), whitespace runs (wrapped lines) made one space.
    Placeholders stay: removing them would break the sentence around them."""
    return " ".join(_TAG.sub("", text).split())


def _has_words(text: str) -> bool:
    return bool(_LETTER.search(_PLACEHOLDER.sub("", text)))


def harvest(language: str, catalogs: list[str] | None = None, min_chars: int = 2,
            max_rows: int | None = None) -> list[dict]:
    """Pairs {anchor: English text, positive: its translation into `language`}, in a stable order.

    Direction: the anchor is always the English source text (the msgid), the positive the
    translation (the msgstr). Dropped: untranslated entries, translations equal to the source
    but for case ("jul" -> "Jul"), entries that are only placeholders or punctuation, English
    text shorter than `min_chars` characters, and duplicates: an English text (or a
    translation) that occurs again, ignoring case, keeps its first pair (catalogs in the order
    given), so no two pairs of a source share an anchor or a positive, which in-batch
    negatives would treat as different.

    The order is by a hash of the anchor, not by catalog or alphabet, so `max_rows` (the first
    that many pairs) is a sample spread over every catalog, and the same on every machine.
    """
    if min_chars < 1:
        raise refused("data.min_chars", min_chars, "at least 1 character")
    if max_rows is not None and max_rows < 1:
        raise refused("data.max_rows", max_rows, "null (every pair) or at least 1 pair")
    # No progress bar: a language's ~15 catalog files take 0.1-0.3 s (pipeline.progress would
    # cost more than that in imports when used outside a run).
    pairs, anchors, positives = [], set(), set()
    for _, _, path in _files_for(language, catalogs):
        for source, translation in read_mo(path):
            anchor, positive = _clean(source), _clean(translation)
            if (len(anchor) < min_chars or not positive or not _has_words(anchor)
                    or not _has_words(positive) or positive.casefold() == anchor.casefold()
                    or anchor.casefold() in anchors or positive.casefold() in positives):
                continue
            anchors.add(anchor.casefold())
            positives.add(positive.casefold())
            pairs.append({"anchor": anchor, "positive": positive})
    pairs.sort(key=lambda pair: hashlib.sha1(pair["anchor"].encode()).hexdigest())
    return pairs if max_rows is None else pairs[:max_rows]
