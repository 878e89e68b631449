"""The multilingual data source: real harvests of the pinned packages' gettext catalogs, and of a
small catalog written here (context, plurals, format-only strings)."""

from __future__ import annotations

import re
import struct

import pytest

from pipeline.config.schema import LANGUAGES
from pipeline.errors import PipelineError
from pipeline.stages import translations

# The floor of docs/multilingual-data.md: every default language has at least this many pairs.
FLOOR = 1500
CYRILLIC = re.compile(r"[\u0400-\u04ff]")


@pytest.fixture(scope="module")
def harvests() -> dict[str, list[dict]]:
    return {language: translations.harvest(language) for language in LANGUAGES}


def test_two_harvests_are_equal(harvests):
    again = translations.harvest("de")
    assert again == harvests["de"]
    assert translations.harvest("de", max_rows=25) == again[:25]


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_default_language_has_the_floor_of_pairs(harvests, language):
    pairs = harvests[language]
    assert len(pairs) >= FLOOR, (language, len(pairs))
    assert all(set(pair) == {"anchor", "positive"} for pair in pairs)
    assert len({p["anchor"].casefold() for p in pairs}) == len(pairs)  # no anchor twice
    assert len({p["positive"].casefold() for p in pairs}) == len(pairs)  # no positive twice
    assert all(p["positive"].casefold() != p["anchor"].casefold() for p in pairs)


def test_anchors_are_english_and_positives_the_translation(harvests):
    ru = harvests["ru"]
    assert not any(CYRILLIC.search(p["anchor"]) for p in ru)
    assert sum(bool(CYRILLIC.search(p["positive"])) for p in ru) > 0.95 * len(ru)
    # One English text is an anchor in every language, each with its own translation.
    by_language = {lang: {p["anchor"]: p["positive"] for p in pairs} for lang, pairs in harvests.items()}
    assert by_language["de"]["Password changed successfully."] == "Passwort erfolgreich geändert."
    assert by_language["ru"]["Password changed successfully."] == "Пароль успешно изменен."


def test_a_missing_language_gives_one_clear_message():
    with pytest.raises(PipelineError) as caught:
        translations.harvest("xx")
    message = str(caught.value)
    assert message.startswith("data.languages: 'xx' has no translations in "
                              "data.catalogs=['trac', 'django']; available: ")
    assert all(language in message for language in ("de", "fr", "pt_BR", "zh_CN"))
    with pytest.raises(PipelineError, match=r"^data.languages: 'xx' has no translations"):
        translations.fingerprint("xx")


def test_languages_and_refused_catalogs():
    available = translations.languages()
    assert available == sorted(available)
    assert set(LANGUAGES) <= set(available)
    assert "zh_Hans" not in available  # Django's zh_Hans is zh_CN, as in Trac
    with pytest.raises(PipelineError, match=r"^data.catalogs: 'no_such_package' is not an installed"):
        translations.harvest("de", ["trac", "no_such_package"])
    with pytest.raises(PipelineError, match=r"^data.catalogs=\[\] is not allowed"):
        translations.languages([])
    with pytest.raises(PipelineError, match=r"^data.catalogs: 'json' ships no gettext catalogs"):
        translations.languages(["json"])


def test_the_fingerprint_changes_with_the_catalogs():
    both = translations.fingerprint("de")
    assert both == translations.fingerprint("de", ["trac", "django"])
    assert len({both, translations.fingerprint("de", ["trac"]),
                translations.fingerprint("de", ["django"]), translations.fingerprint("fr")}) == 4


def _write_mo(path, entries: dict[str, str]) -> None:
    """A compiled gettext catalog (the format msgfmt writes), little-endian."""
    entries = {"": "Content-Type: text/plain; charset=UTF-8\n"} | entries
    keys = sorted(entries, key=lambda k: k.encode())
    ids, strs = [k.encode() for k in keys], [entries[k].encode() for k in keys]
    start = 28 + 16 * len(keys)
    table, blob = [], b""
    for text in ids + strs:
        table.append((len(text), start + len(blob)))
        blob += text + b"\x00"
    header = struct.pack("<7I", 0x950412DE, 0, len(keys), 28, 28 + 8 * len(keys), 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + b"".join(struct.pack("<2I", *entry) for entry in table) + blob)


def test_context_plurals_markup_and_format_only_strings(tmp_path, monkeypatch):
    catalog = tmp_path / "tinycat" / "locale" / "xx" / "LC_MESSAGES" / "tiny.mo"
    (tmp_path / "tinycat").mkdir()
    (tmp_path / "tinycat" / "__init__.py").write_text("")
    _write_mo(catalog, {
        "month name\x04May": "Mai",                          # context stripped
        "%(count)s file\x00%(count)s files": "%(count)s Datei\x00%(count)s Dateien",  # singular
        "<strong>Save</strong> the\n  page": "Die Seite <b>speichern</b>",  # tags, wrapped line
        "%(name)s: %(value)s": "%(name)s : %(value)s",         # only placeholders
        "jul": "Jul",                                          # the same but for case
        "Untranslated": "",
        "Delete": "Löschen",
        "delete": "löschen",                                   # the same anchor again
        "Remove": "Löschen",                                   # the same positive again
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    assert translations.languages(["tinycat"]) == ["xx"]
    pairs = translations.harvest("xx", ["tinycat"])
    assert sorted((p["anchor"], p["positive"]) for p in pairs) == [
        ("%(count)s file", "%(count)s Datei"), ("Delete", "Löschen"), ("May", "Mai"),
        ("Save the page", "Die Seite speichern")]
    assert translations.harvest("xx", ["tinycat"], min_chars=4) == [
        p for p in pairs if p["anchor"] != "May"]
    before = translations.fingerprint("xx", ["tinycat"])
    _write_mo(catalog, {"Delete": "Löschen"})
    assert translations.fingerprint("xx", ["tinycat"]) != before
