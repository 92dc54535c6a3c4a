"""Password hashing (argon2id) and the password policy.

Parameters (argon2-cffi :class:`~argon2.PasswordHasher`, all explicit, recorded in every hash)::

    type         argon2id (RFC 9106; resists both side-channel and GPU attacks)
    memory_cost  47104 KiB (46 MiB)
    time_cost    2 passes
    parallelism  1 lane
    hash_len     32 bytes
    salt_len     16 bytes (random per hash)

This is above OWASP's minimum (m=19 MiB, t=2, p=1), and OWASP's first listed option (m=46 MiB,
t=1, p=1) with twice the passes. Measured on the 2-core development machine (argon2-cffi 25, other jobs
running): 87–100 ms per hash or verification (median ≈ 90–97 ms over 9–15 runs), inside the
50–100 ms target; m=19 MiB/t=2 took only 24 ms there. Each concurrent sign-in needs 46 MiB of
memory for that time.

The encoded hash (``$argon2id$v=19$m=47104,t=2,p=1$<salt>$<hash>``) carries its parameters, so
old hashes keep verifying after the parameters change; :func:`verify_and_update` returns a new hash
when the stored one is weaker than today's parameters, for the caller to store.

Verification compares in constant time (libargon2). For an unknown account the caller still spends
one verification (:func:`verify_dummy`), so response time does not reveal whether an account exists.

Policy (NIST SP 800-63B 5.1.1.2 style, no composition rules): at least 12 characters, at most 1024,
not a common password, not containing the username or the e-mail's local part, and hard to guess:
zxcvbn (Dropbox's estimator, the ``zxcvbn`` package) checks the password against its dictionaries of
breached and common passwords, names and words, keyboard patterns, dates and sequences, with the
e-mail, the display name and this service's context words (:data:`CONTEXT_WORDS`: the roles, the
service, the clinical setting) as extra words, and it must reach score :data:`MIN_SCORE` (4: about
10^10 guesses or more). Score 3 (10^8) would let ``Technician2024!!`` through, a role name with a
year, which an attacker holding the hash tries early; the hashes are what an offline attacker gets.
zxcvbn reads at most the first 72 characters (:data:`SCORED_LENGTH`); a longer passphrase is scored
on those. The refusal says what makes the password guessable, never the password itself.
"""

from __future__ import annotations

import re
import unicodedata

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

from neuronav.security.errors import PasswordPolicyError

MEMORY_COST_KIB = 47104
TIME_COST = 2
PARALLELISM = 1
HASH_LEN = 32
SALT_LEN = 16

MIN_LENGTH = 12
MAX_LENGTH = 1024
MIN_SCORE = 4  # zxcvbn's scale 0–4; 4: ≥ 10^10 guesses
SCORED_LENGTH = 72  # zxcvbn refuses longer input

# NIST SP 800-63B: "context-specific words, such as the name of the service, the username, and
# derivatives thereof" — the first words a targeted guess tries here
CONTEXT_WORDS = (
    "neuronav",
    "technician",
    "radiologist",
    "neurologist",
    "admin",
    "administrator",
    "hospital",
    "clinic",
    "radiology",
    "neurology",
    "neuro",
    "brain",
    "mri",
    "scan",
    "tumour",
    "tumor",
    "doctor",
    "nurse",
    "patient",
    "medical",
)

_PATTERNS = {  # zxcvbn's match patterns, as the refusal names them
    "dictionary": "a common word, name or password",
    "user_inputs": "a word from your name, e-mail or this service",
    "spatial": "a keyboard pattern",
    "repeat": "a repetition",
    "sequence": "a sequence such as abc or 123",
    "regex": "a year",
    "date": "a date",
}

HASHER = PasswordHasher(
    time_cost=TIME_COST,
    memory_cost=MEMORY_COST_KIB,
    parallelism=PARALLELISM,
    hash_len=HASH_LEN,
    salt_len=SALT_LEN,
    encoding="utf-8",
    type=Type.ID,
)

# A small list of passwords that pass the length rule but are among the most guessed (breach
# corpora and clinical-site classics). Compared case-insensitively, ignoring spaces.
COMMON_PASSWORDS = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123456123456",
        "111111111111",
        "000000000000",
        "123123123123",
        "qwertyuiopas",
        "qwertyuiop123",
        "qwerty123456",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "zaq12wsxcde3",
        "asdfghjkl123",
        "password1234",
        "password12345",
        "password123456",
        "password123!",
        "passw0rd1234",
        "p@ssw0rd1234",
        "p@ssword1234",
        "iloveyou1234",
        "letmein12345",
        "welcome12345",
        "welcome123456",
        "welcometothejungle",
        "changeme1234",
        "administrator",
        "administrator1",
        "admin1234567",
        "adminadmin123",
        "superman1234",
        "football1234",
        "baseball1234",
        "princess1234",
        "sunshine1234",
        "monkey123456",
        "dragon123456",
        "trustno1trustno1",
        "correcthorsebatterystaple",
        "hospital1234",
        "hospital2024",
        "hospital2025",
        "radiology123",
        "radiology1234",
        "neurology123",
        "neurology1234",
        "doctor123456",
        "medicine1234",
        "neuronav1234",
        "neuronav12345",
        "mri123456789",
        "brainmri1234",
        "winter2024!!",
        "summer2024!!",
        "spring2025!!",
        "autumn2025!!",
    }
)


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (encoded, with its salt and parameters)."""
    return HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches ``stored_hash``; False for a mismatch or an unreadable hash."""
    if len(password) > MAX_LENGTH * 4:
        return False
    try:
        return HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when ``stored_hash`` was made with other (weaker or older) parameters than :data:`HASHER`."""
    try:
        return HASHER.check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True


def verify_and_update(stored_hash: str, password: str) -> tuple[bool, str | None]:
    """``(matches, new_hash)``: ``new_hash`` is a fresh hash to store when the password matched and the
    stored hash uses outdated parameters, else None."""
    if not verify_password(stored_hash, password):
        return False, None
    return True, (hash_password(password) if needs_rehash(stored_hash) else None)


_DUMMY_HASH: str | None = None


def verify_dummy(password: str) -> bool:
    """Spend one verification against a throwaway hash; always False.

    Called for an unknown user name so that it takes as long as a wrong password for a real one.
    """
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = HASHER.hash("neuronav-dummy-password-for-timing")
    verify_password(_DUMMY_HASH, password)
    return False


def _fold(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def _user_inputs(username: str, email: str, display_name: str) -> list[str]:
    words = [*CONTEXT_WORDS]
    for value in (username, email, display_name):
        folded = unicodedata.normalize("NFKC", value).casefold().strip()
        if folded:
            words.append(folded)
            words.extend(w for w in re.split(r"[\s@.+_-]+", folded) if len(w) >= 3)
    return words


def guessability(password: str, *, username: str = "", email: str = "", display_name: str = "") -> tuple[int, str]:
    """zxcvbn's score (0–4) of ``password`` with the person's and the service's words, and what makes it
    guessable (the kinds of pattern found, never their text)."""
    result = zxcvbn(password[:SCORED_LENGTH], user_inputs=_user_inputs(username, email, display_name))
    kinds: list[str] = []
    for match in result["sequence"]:
        pattern = str(match.get("pattern", ""))
        if pattern == "dictionary" and match.get("dictionary_name") == "user_inputs":
            pattern = "user_inputs"
        kind = _PATTERNS.get(pattern)
        if kind is not None and kind not in kinds:
            kinds.append(kind)
    return int(result["score"]), ", ".join(kinds) or "too few unpredictable characters"


def password_problems(password: str, *, username: str = "", email: str = "", display_name: str = "") -> list[str]:
    """Every policy rule ``password`` breaks, one clear sentence each; empty when it is acceptable."""
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(f"The password must be at least {MIN_LENGTH} characters long (it has {len(password)}).")
    if len(password) > MAX_LENGTH:
        problems.append(f"The password must be at most {MAX_LENGTH} characters long.")
    folded = _fold(password)
    if folded in COMMON_PASSWORDS:
        problems.append("The password is too common; choose one that is not on lists of frequently used passwords.")
    elif len(set(folded)) <= 2 and password:
        problems.append("The password repeats too few different characters; choose a longer phrase.")
    personal: list[tuple[str, str]] = []
    if username:
        personal.append(("user name", _fold(username)))
    if email:
        local = _fold(email).split("@", 1)[0]
        personal.append(("e-mail address", local))
    for label, value in personal:
        if len(value) >= 3 and value in folded:
            problems.append(f"The password must not contain your {label}.")
            break
    if not problems:  # the estimate last: the rules above name the problem more precisely
        score, found = guessability(password, username=username, email=email, display_name=display_name)
        if score < MIN_SCORE:
            problems.append(
                f"The password is too easy to guess: it is built from {found}. "
                "Choose a longer phrase of several unrelated words."
            )
    return problems


def check_password_policy(password: str, *, username: str = "", email: str = "", display_name: str = "") -> None:
    """Raise :class:`PasswordPolicyError` (with every problem) when ``password`` breaks the policy."""
    problems = password_problems(password, username=username, email=email, display_name=display_name)
    if problems:
        raise PasswordPolicyError(problems)


__all__ = [
    "COMMON_PASSWORDS",
    "CONTEXT_WORDS",
    "HASHER",
    "MAX_LENGTH",
    "MEMORY_COST_KIB",
    "MIN_LENGTH",
    "MIN_SCORE",
    "PARALLELISM",
    "TIME_COST",
    "check_password_policy",
    "guessability",
    "hash_password",
    "needs_rehash",
    "password_problems",
    "verify_and_update",
    "verify_dummy",
    "verify_password",
]
