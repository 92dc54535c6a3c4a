"""A keyed blind index of the patient identity, so the worklist finds a study by MRN, accession number
or name (a prefix, ignoring case and accents) without decrypting every row (pure: no database, no I/O).

The identity columns are encrypted with randomised AES-GCM (:mod:`neuronav.storage.crypto`): equal
values give different tokens, so they cannot be searched. Next to them each study gets a set of
*search tokens* (table ``study_search_tokens``, written when the study is received and by
``neuronav db reindex-search``): ``HMAC-SHA256(search key, kind ‖ 0 ‖ normalised value)``, truncated to
128 bits, for

* ``mrn``: the whole patient id, normalised (:func:`normalise`);
* ``acc``: the whole accession number, normalised;
* ``name``: every prefix of 2 to :data:`MAX_PREFIX` characters of every word of the name (family,
  given, middle names: the components of the DICOM PN and the words within them).

A search term is normalised and hashed the same way; a study matches when it holds the token of the
whole term as an MRN or accession number, or the token of every word of the term as a name prefix. The search key
is derived from the site's field key (``HMAC(field key, "neuronav/search/v1")``), so without the keys
a token is neither reversible nor recomputable. What the tokens do reveal, to someone who reads the
database, is which studies share a name prefix, an MRN or an accession number, and how long a name's
words are (the number of prefix tokens): the price of an equality index. The plain identity stays
encrypted; rotating the field key means ``neuronav db reindex-search``.

Normalisation: Unicode NFKD, combining marks dropped (``Müller`` → ``muller``), case folded (``ß`` →
``ss``), everything but letters and digits dropped (``O'Brien`` → ``obrien``; ``12-34`` → ``1234``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass

SEARCH_KEY_INFO = b"neuronav/search/v1"
TOKEN_HEX = 32  # 128 bits
MIN_PREFIX = 2
MAX_PREFIX = 12  # longer words are found by their first 12 characters
MAX_TERM_WORDS = 4

_SPLIT = re.compile(r"[\s^=,/\\\-]+")


def search_key(field_key: bytes) -> bytes:
    """The key of the search tokens, derived from the field key (never the field key itself)."""
    return hmac.new(field_key, SEARCH_KEY_INFO, hashlib.sha256).digest()


def normalise(text: str) -> str:
    """Accents stripped, case folded, only letters and digits kept."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return "".join(ch for ch in plain.casefold() if ch.isalnum())


def words(text: str) -> list[str]:
    """The normalised words of a name or a search term (PN components and the words within them)."""
    return [w for w in (normalise(part) for part in _SPLIT.split(text)) if w]


def token(key: bytes, kind: str, value: str) -> str:
    return hmac.new(key, kind.encode() + b"\0" + value.encode("utf-8"), hashlib.sha256).hexdigest()[:TOKEN_HEX]


def study_tokens(key: bytes, *, name: str | None, mrn: str | None, accession: str | None) -> set[str]:
    """Every search token of one study's identity."""
    out: set[str] = set()
    if mrn and (m := normalise(mrn)):
        out.add(token(key, "mrn", m))
    if accession and (a := normalise(accession)):
        out.add(token(key, "acc", a))
    for word in words(name or ""):
        for n in range(MIN_PREFIX, min(len(word), MAX_PREFIX) + 1):
            out.add(token(key, "name", word[:n]))
    return out


@dataclass(frozen=True)
class TermTokens:
    """What a search term asks for: a study matches when it holds a token of ``exact`` (the whole term
    as an MRN or accession number) or a token of every set of ``words`` (each word a name prefix)."""

    exact: frozenset[str]
    words: tuple[frozenset[str], ...]


def term_tokens(key: bytes, term: str) -> TermTokens | None:
    """The tokens of a search term (:class:`TermTokens`); None when it has nothing to search. Words
    shorter than :data:`MIN_PREFIX` are not name prefixes; at most :data:`MAX_TERM_WORDS` words count."""
    whole = normalise(term)
    if not whole:
        return None
    names = [w[:MAX_PREFIX] for w in words(term) if len(w) >= MIN_PREFIX][:MAX_TERM_WORDS]
    return TermTokens(
        exact=frozenset({token(key, "mrn", whole), token(key, "acc", whole)}),
        words=tuple(frozenset({token(key, "name", w)}) for w in names),
    )


__all__ = [
    "MAX_PREFIX",
    "MAX_TERM_WORDS",
    "MIN_PREFIX",
    "TermTokens",
    "normalise",
    "search_key",
    "study_tokens",
    "term_tokens",
    "token",
    "words",
]
