"""Keys, key wrapping, chunk records and PHI field encryption (neuronav.storage.crypto)."""

from __future__ import annotations

import pytest

from neuronav.errors import ConfigError
from neuronav.storage.crypto import (
    CHUNK_OVERHEAD,
    ChunkCipher,
    Keyring,
    MasterKey,
    decrypt_field,
    encrypt_field,
    is_encrypted_field,
    keyring_from_settings,
    new_data_key,
    parse_master_keys,
    unwrap_key,
    wrap_key,
)
from neuronav.storage.errors import MasterKeyUnavailableError, StorageIntegrityError

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))


def test_master_key_id_is_a_fingerprint_and_repr_hides_the_key() -> None:
    a = MasterKey.from_bytes(KEY_A)
    assert a.id.startswith("mk-") and len(a.id) == 19 and a.id == MasterKey.from_hex(KEY_A.hex()).id
    assert a.id != MasterKey.from_bytes(KEY_B).id
    assert KEY_A.hex() not in a.id and KEY_A.hex() not in repr(a) and "key_bytes" not in repr(a)
    assert KEY_A.hex() not in repr(Keyring(a))
    with pytest.raises(ConfigError):
        MasterKey("mk-short", b"x" * 16)
    with pytest.raises(ConfigError):
        MasterKey("bad id/..", KEY_A)


def test_parse_errors_name_the_variable_but_never_echo_the_value() -> None:
    secret = "ab" * 31 + "zz"
    with pytest.raises(ConfigError) as info:
        MasterKey.from_hex(secret)
    assert "NEURONAV_MASTER_KEY" in str(info.value) and secret not in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_master_keys(f"{KEY_A.hex()},{secret}")
    assert "NEURONAV_OLD_MASTER_KEYS" in str(info.value) and "entry 2" in str(info.value)
    assert secret not in str(info.value)
    keys = parse_master_keys(f" {KEY_A.hex()}, {KEY_B.hex().upper()}\n")
    assert [k.key_bytes for k in keys] == [KEY_A, KEY_B]
    assert parse_master_keys("") == []


def test_keyring_active_old_and_missing_keys() -> None:
    a, b = MasterKey.from_bytes(KEY_A), MasterKey.from_bytes(KEY_B)
    ring = Keyring(a, [b, a])
    assert ring.active == a and ring.ids == [a.id, b.id] and len(ring) == 2 and b.id in ring
    swapped = ring.with_active(b)
    assert swapped.active == b and swapped.ids == [b.id, a.id]
    assert swapped.without(a.id).ids == [b.id]
    with pytest.raises(ConfigError):
        ring.without(a.id)  # the active key
    with pytest.raises(MasterKeyUnavailableError, match="NEURONAV_OLD_MASTER_KEYS"):
        Keyring(a).get(b.id)
    with pytest.raises(ConfigError, match="share the id"):
        Keyring(a, [MasterKey(a.id, KEY_B)])


def test_keyring_from_settings_reads_active_and_old_keys() -> None:
    class FakeSettings:
        old_master_keys = f"{KEY_B.hex()}"

        def master_key_bytes(self) -> bytes:
            return KEY_A

    ring = keyring_from_settings(FakeSettings())  # type: ignore[arg-type]
    a, b = MasterKey.from_bytes(KEY_A), MasterKey.from_bytes(KEY_B)
    assert ring.active == a and ring.active.key_bytes == KEY_A and ring.ids == [a.id, b.id]


def test_wrapped_key_is_bound_to_master_key_and_context() -> None:
    a, b = MasterKey.from_bytes(KEY_A), MasterKey.from_bytes(KEY_B)
    dek = new_data_key()
    wrapped = wrap_key(a, dek, b"obj\x00obj_1")
    assert unwrap_key(a, wrapped, b"obj\x00obj_1") == dek
    assert wrapped != wrap_key(a, dek, b"obj\x00obj_1")  # fresh nonce every time
    with pytest.raises(StorageIntegrityError):
        unwrap_key(b, wrapped, b"obj\x00obj_1")
    with pytest.raises(StorageIntegrityError):
        unwrap_key(a, wrapped, b"obj\x00obj_2")  # moved to another object
    with pytest.raises(StorageIntegrityError):
        unwrap_key(MasterKey("renamed", KEY_A), wrapped, b"obj\x00obj_1")  # same material under another id
    with pytest.raises(StorageIntegrityError):
        unwrap_key(a, wrapped[:-4] + ("AAAA" if wrapped[-4:] != "AAAA" else "BBBB"), b"obj\x00obj_1")
    with pytest.raises(StorageIntegrityError):
        unwrap_key(a, "not base64!", b"obj\x00obj_1")


def test_chunk_records_are_bound_to_object_index_and_final_flag() -> None:
    dek = new_data_key()
    cipher = ChunkCipher(dek, "obj_a")
    record = cipher.seal(3, False, b"hello chunk")
    assert len(record) == len(b"hello chunk") + CHUNK_OVERHEAD and b"hello" not in record
    assert cipher.open(3, False, record) == b"hello chunk"
    for index, final, other in [(4, False, cipher), (3, True, cipher), (3, False, ChunkCipher(dek, "obj_b"))]:
        with pytest.raises(StorageIntegrityError):
            other.open(index, final, record)
    empty = cipher.seal(0, True, b"")
    assert cipher.open(0, True, empty) == b""
    with pytest.raises(StorageIntegrityError, match="truncated"):
        cipher.open(0, True, empty[:-1][:20])


@pytest.mark.parametrize("text", ["", "Müller^Hans", "1970-01-01", "x" * 10_000, "名前 🧠"])
def test_field_round_trip(text: str) -> None:
    key = new_data_key()
    token = encrypt_field(text, key, "patients.name")
    assert is_encrypted_field(token) and token.startswith("nnf1:") and (not text or text not in token)
    assert decrypt_field(token, key, "patients.name") == text
    assert encrypt_field(text, key, "patients.name") != token  # randomised


def test_field_tampering_is_detected_at_every_position() -> None:
    key = new_data_key()
    token = encrypt_field("Doe^Jane", key, "patients.name")
    for i in range(len(token)):
        replacement = "A" if token[i] != "A" else "B"
        altered = token[:i] + replacement + token[i + 1 :]
        with pytest.raises(StorageIntegrityError):
            decrypt_field(altered, key, "patients.name")
    with pytest.raises(StorageIntegrityError):
        decrypt_field(token[:-2], key, "patients.name")
    with pytest.raises(StorageIntegrityError, match="not an encrypted field"):
        decrypt_field("Doe^Jane", key, "patients.name")


def test_field_cannot_move_between_columns_or_keys() -> None:
    key = new_data_key()
    token = encrypt_field("1970-01-01", key, "patients.birth_date")
    with pytest.raises(StorageIntegrityError, match="another column"):
        decrypt_field(token, key, "patients.name")
    with pytest.raises(StorageIntegrityError, match="field key"):
        decrypt_field(token, new_data_key(), "patients.birth_date")
    with pytest.raises(ValueError):
        encrypt_field("x", key, "")
