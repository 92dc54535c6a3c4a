"""Settings: embedded defaults, production refuses placeholder secrets, pseudonyms are keyed HMACs."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from neuronav.config import get_settings, load_settings, packaged_models_dir, read_settings
from neuronav.errors import ConfigError
from neuronav.pseudonym import pseudonymise


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ENV", "DATABASE_URL", "MASTER_KEY", "SECRET_KEY", "PSEUDONYM_KEY", "BROKER_URL"):
        monkeypatch.delenv(f"NEURONAV_{name}", raising=False)
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()


def test_development_defaults_are_embedded_and_stable(tmp_path: Path) -> None:
    s = load_settings()
    assert s.database == f"sqlite:///{tmp_path / 'data' / 'neuronav.db'}"
    assert s.storage == tmp_path / "data" / "storage" and s.broker_url == ""
    assert len(s.master_key_bytes()) == 32
    secrets_file = tmp_path / "data" / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert load_settings().secret_key == s.secret_key  # kept across restarts


@pytest.mark.parametrize("placeholder", ["", "changeme", "secret", "short"])
def test_production_refuses_missing_or_placeholder_secrets(monkeypatch: pytest.MonkeyPatch, placeholder: str) -> None:
    monkeypatch.setenv("NEURONAV_ENV", "production")
    monkeypatch.setenv("NEURONAV_MASTER_KEY", "ab" * 32)
    monkeypatch.setenv("NEURONAV_SECRET_KEY", placeholder)
    monkeypatch.setenv("NEURONAV_PSEUDONYM_KEY", "cd" * 32)
    with pytest.raises(ConfigError, match="NEURONAV_SECRET_KEY"):
        load_settings()
    monkeypatch.setenv("NEURONAV_SECRET_KEY", "x" * 40)
    assert load_settings().env == "production"
    monkeypatch.setenv("NEURONAV_MASTER_KEY", "zz" * 32)
    with pytest.raises(ConfigError, match="64 hex digits"):
        load_settings()


def test_pseudonym_is_a_keyed_hmac_not_a_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURONAV_PSEUDONYM_KEY", "11" * 32)
    get_settings.cache_clear()
    a = pseudonymise("PAT-001")
    assert a.startswith("NNP-") and a == pseudonymise(" PAT-001 ")
    assert a != pseudonymise("PAT-002")
    assert a[4:] not in hashlib.sha256(b"PAT-001").hexdigest()
    monkeypatch.setenv("NEURONAV_PSEUDONYM_KEY", "22" * 32)
    get_settings.cache_clear()
    assert pseudonymise("PAT-001") != a  # another site's key, another pseudonym
    with pytest.raises(ValueError):
        pseudonymise("  ")


def test_model_settings_default_to_the_packaged_models_and_write_no_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("MODELS_DIR", "USER_MODELS_DIR", "THREADS"):
        monkeypatch.delenv(f"NEURONAV_{name}", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    s = read_settings()
    assert s.models_dir == packaged_models_dir()
    assert (s.models_dir / "tumour-classification" / "1.0.0" / "card.json").is_file()  # package data
    assert s.user_models_dir == tmp_path / "xdg" / "neuronav" / "models"
    assert s.threads >= 1
    assert not (tmp_path / "data" / "secrets.json").exists()  # no secrets generated for a model lookup

    monkeypatch.setenv("NEURONAV_MODELS_DIR", str(tmp_path / "site"))
    monkeypatch.setenv("NEURONAV_USER_MODELS_DIR", "")  # empty is the default, as unset
    monkeypatch.setenv("NEURONAV_THREADS", "3")
    s = read_settings()
    assert (s.models_dir, s.user_models_dir, s.threads) == (
        tmp_path / "site",
        tmp_path / "xdg" / "neuronav" / "models",
        3,
    )


@pytest.mark.parametrize("threads", ["0", "-2", "many"])
def test_bad_threads_are_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, threads: str) -> None:
    monkeypatch.setenv("NEURONAV_THREADS", threads)
    with pytest.raises(ConfigError, match="NEURONAV_THREADS"):
        read_settings()
