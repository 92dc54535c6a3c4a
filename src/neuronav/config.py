"""One typed Settings object, read from the environment (prefix ``NEURONAV_``) or a ``.env`` file.

Defaults are the embedded set-up a new user gets with no configuration: SQLite and a storage folder
under the data folder, the in-process worker, development mode. Outside development mode
(``NEURONAV_ENV=production``) every secret must be set to a real value: missing, short or
placeholder secrets are refused with :class:`~neuronav.errors.ConfigError` naming the variable.

==========================  =================================================================
NEURONAV_ENV                development (default) | production
NEURONAV_DATA_DIR           data folder (default ~/.local/share/neuronav)
NEURONAV_DATABASE_URL       SQLAlchemy URL (default sqlite:///<data>/neuronav.db); postgresql+psycopg://…
NEURONAV_BROKER_URL         Celery broker (redis://…); empty = in-process worker
NEURONAV_STORAGE_DIR        encrypted object store (default <data>/storage)
NEURONAV_MASTER_KEY         64 hex digits: wraps the data keys of stored objects
NEURONAV_OLD_MASTER_KEYS    earlier master keys (comma-separated), only while `neuronav keys rotate` runs
NEURONAV_SECRET_KEY         signs session tokens and CSRF tokens (≥ 32 characters)
NEURONAV_PSEUDONYM_KEY      keyed HMAC of patient ids (≥ 32 bytes; see neuronav.pseudonym)
NEURONAV_MAX_UPLOAD_BYTES   upload size cap (default 2 GiB)
NEURONAV_MODELS_DIR         the shipped models (default: the package's own shipped_models folder)
NEURONAV_USER_MODELS_DIR    models a site registers (default $XDG_DATA_HOME/neuronav/models,
                            else ~/.local/share/neuronav/models)
NEURONAV_THREADS            ONNX Runtime intra-op threads per model session (default: every core)
NEURONAV_ORT_PROVIDERS      where the models run: ``auto`` (default: CUDA, ROCm, CoreML or DirectML when
                            ONNX Runtime offers it, else the CPU), ``cpu``, or a comma-separated list of
                            ONNX Runtime provider names (``CUDAExecutionProvider,CPUExecutionProvider``)
NEURONAV_REPORT_SERIAL      1 = Secondary Captures made in the calling thread, not the spawned report helper
NEURONAV_TRUSTED_PROXIES    reverse proxies whose X-Forwarded-For is believed: IPs / CIDRs, comma-separated
                            (default empty: the client address is the socket's; neuronav.security.network)
NEURONAV_METRICS_TOKEN      outside development, a Prometheus scraper may read /metrics with
                            ``Authorization: Bearer <token>`` (≥ 32 characters; default empty: admins only)
NEURONAV_MAX_BODY_BYTES     body cap of every route but the upload (JSON; default 1 MiB)
NEURONAV_READ_TIMEOUT_S     request headers due within, and a body silent for no longer than, this (default 15 s)
NEURONAV_KEEP_ALIVE_S       an idle keep-alive connection is closed after this long (default 5)
NEURONAV_FAILED_REQUEUES    re-uploads of a study whose analysis failed queue it again at most this often (3)
==========================  =================================================================

Jobs, audit anchors and temporary files (security hardening, issue 17):

================================  ===========================================================
NEURONAV_JOB_HEARTBEAT_S          a running analysis renews its lease this often (default 30 s)
NEURONAV_JOB_LEASE_S              a running analysis without a heartbeat for this long is re-queued
                                  (default 120 s; failed with its reason after MAX_ATTEMPTS)
NEURONAV_MAINTENANCE_INTERVAL_S   how often the server and each Celery worker sweep expired
                                  leases and unused private temporary folders (default 60 s)
NEURONAV_AUDIT_ANCHOR_SINK        where audit anchors are shipped: ``file:/path`` (a line appended
                                  each interval) or ``syslog+tls://host:port`` (RFC 5424 over TLS,
                                  RFC 5425 framing); empty = not shipped
NEURONAV_AUDIT_ANCHOR_INTERVAL_S  seconds between two anchors shipped by the server (default 300)
NEURONAV_AUDIT_ANCHOR_CA_FILE     CA certificate(s) the syslog server's certificate must chain to
                                  (default: the system's trust store)
================================  ===========================================================

The DICOM listener (issue 13, :mod:`neuronav.integrations.dimse`; who may send: ``neuronav nodes``):

==================================  ===========================================================
NEURONAV_DICOM_PORT                 `neuronav serve` also listens for DICOM on this port (empty:
                                    no listener; `serve --demo`: 11112)
NEURONAV_DICOM_AE_TITLE             the listener's AE title (default NEURONAV)
NEURONAV_DICOM_HOST                 address the listener binds (default: the same as `serve --host`)
NEURONAV_DICOM_STABLE_AGE           a study is complete when no instance of it arrived for this
                                    many seconds (default 60, as Orthanc's StableAge)
NEURONAV_DICOM_MAX_ASSOCIATIONS     associations at once (default 10; more are refused, transient)
NEURONAV_DICOM_MAX_INSTANCE_BYTES   one instance larger than this is refused (default 1 GiB)
NEURONAV_DICOM_MAX_ASSOCIATION_BYTES  an association that sent this much is refused further
                                    instances (default 8 GiB)
NEURONAV_DICOM_ACSE_TIMEOUT_S       association negotiation / release due within (default 30 s)
NEURONAV_DICOM_DIMSE_TIMEOUT_S      a DIMSE message due within (default 60 s)
NEURONAV_DICOM_NETWORK_TIMEOUT_S    an association silent this long is aborted (default 60 s)
==================================  ===========================================================

In development mode, missing secrets are generated once and kept in ``<data>/secrets.json``
(mode 0600; a new data folder is made 0700), so a restart keeps sessions and stored data readable.
The model folders and threads are read with :func:`read_settings`, which neither generates nor
checks secrets (``neuronav analyze`` writes no secrets.json).
"""

from __future__ import annotations

import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from neuronav.errors import ConfigError

PLACEHOLDERS = frozenset({"", "changeme", "change-me", "changethis", "secret", "password", "placeholder", "xxx"})
GENERATED_SECRETS = ("master_key", "secret_key", "pseudonym_key")


def check_ae_title(value: str) -> str:
    """A DICOM AE title (PS3.5 AE: 1-16 characters of the default repertoire, no backslash or control
    characters, not only spaces), stripped of its padding; ValueError naming the problem."""
    title = value.strip(" ")
    if not title:
        raise ValueError("an AE title must not be empty")
    if len(title) > 16:
        raise ValueError(f"AE title {title!r} is longer than 16 characters")
    if any(not (" " <= ch <= "~") or ch == "\\" for ch in title):
        raise ValueError(f"AE title {title!r} may hold only printable ASCII characters other than a backslash")
    return title


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "neuronav"


def packaged_models_dir() -> Path:
    """The shipped models, installed with the package (``neuronav/shipped_models``)."""
    return Path(__file__).resolve().parent / "shipped_models"


def default_user_models_dir() -> Path:
    return default_data_dir() / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEURONAV_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str = ""
    broker_url: str = ""
    storage_dir: Path | None = None
    master_key: str = ""
    old_master_keys: str = ""
    secret_key: str = ""
    pseudonym_key: str = ""
    max_upload_bytes: int = 2 * 1024**3
    access_token_minutes: int = 15
    session_hours: int = 8
    # models (neuronav.analysis.models), read through read_settings(): no secrets involved
    models_dir: Path = Field(default_factory=packaged_models_dir)
    user_models_dir: Path = Field(default_factory=default_user_models_dir)
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    ort_providers: str = Field(default="auto", max_length=300)

    @field_validator("models_dir", "user_models_dir", "threads", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object, info: ValidationInfo) -> object:
        if value != "":
            return value
        # set but empty (NEURONAV_THREADS=) means the default, as when unset
        if info.field_name == "models_dir":
            return packaged_models_dir()
        if info.field_name == "user_models_dir":
            return default_user_models_dir()
        return os.cpu_count() or 1

    @field_validator("models_dir", "user_models_dir")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    report_serial: bool = False  # neuronav.report._helper
    # the issuer of patient ids (HL7 PID-3.4, FHIR identifier.system) when a study has no IssuerOfPatientID
    assigning_authority: str = ""  # neuronav.report.identity
    trusted_proxies: str = ""  # neuronav.security.network
    metrics_token: str = ""  # neuronav.service.deps.operator_access

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        from neuronav.security.network import parse_networks

        parse_networks(value)  # ValueError naming the entry
        return value

    # -- jobs, audit anchors, temporary files (issue 17; neuronav.workflow.jobs, .anchors, .uploads) --
    job_heartbeat_s: float = Field(default=30.0, gt=0)
    job_lease_s: float = Field(default=120.0, gt=0)
    maintenance_interval_s: float = Field(default=60.0, gt=0)
    audit_anchor_sink: str = ""
    audit_anchor_interval_s: float = Field(default=300.0, gt=0)
    audit_anchor_ca_file: Path | None = None
    # request limits (neuronav.service.app BodySizeMiddleware, `neuronav serve`) and re-upload re-queues
    max_body_bytes: int = Field(default=1024**2, ge=1024)
    read_timeout_s: float = Field(default=15.0, gt=0)
    keep_alive_s: int = Field(default=5, ge=1)
    failed_requeues: int = Field(default=3, ge=0)
    # the outbox (issue 14; neuronav.workflow.deliveries, neuronav.integrations.outbox)
    public_url: str = ""  # this service's address as hospital systems reach it (HL7 RP links to the PDF)
    outbox_interval_s: float = Field(default=5.0, gt=0)  # how often a server looks for due deliveries
    outbox_max_attempts: int = Field(default=8, ge=1)  # then a delivery is failed (an admin may resend it)
    outbox_backoff_s: float = Field(default=30.0, gt=0)  # first retry; doubled each time, at most an hour
    outbox_lease_s: float = Field(default=300.0, gt=0)  # a delivery "sending" longer is taken up again
    # the HL7 order listener (neuronav.integrations.hl7.listener): host:port ("" = none), who may send
    hl7_listen: str = ""
    hl7_allowed: str = ""  # addresses / CIDR blocks, comma-separated; empty: nobody
    hl7_tls_cert: Path | None = None
    hl7_tls_key: Path | None = None

    @field_validator("hl7_allowed")
    @classmethod
    def _hl7_allowed_parse(cls, value: str) -> str:
        import ipaddress

        for item in (v.strip() for v in value.split(",")):
            if item:
                ipaddress.ip_network(item, strict=False)  # ValueError naming the entry
        return value

    # -- the DICOM listener (issue 13; neuronav.integrations.dimse, neuronav.workflow.dicom) --
    dicom_port: int | None = Field(default=None, ge=1, le=65535)
    dicom_ae_title: str = "NEURONAV"
    dicom_host: str = ""
    dicom_stable_age: float = Field(default=60.0, gt=0)
    dicom_max_associations: int = Field(default=10, ge=1)
    dicom_max_instance_bytes: int = Field(default=1024**3, ge=1024)
    dicom_max_association_bytes: int = Field(default=8 * 1024**3, ge=1024)
    dicom_acse_timeout_s: float = Field(default=30.0, gt=0)
    dicom_dimse_timeout_s: float = Field(default=60.0, gt=0)
    dicom_network_timeout_s: float = Field(default=60.0, gt=0)
    # the PACS NeuroNav queries and retrieves from (C-FIND / C-MOVE): the name of a registered DICOM node
    # (neuronav nodes add … --incoming: the moved instances arrive at the listener); empty: no PACS
    # (priors are then looked for among the studies held only; neuronav.workflow.priors, .pacs)
    pacs_node: str = ""
    prior_fetch: bool = True  # look for the patient's prior study (held, and at the PACS) when analysing

    @field_validator("dicom_ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        return check_ae_title(value)  # ValueError naming the problem

    @field_validator("dicom_port", mode="before")
    @classmethod
    def _empty_port_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def development(self) -> bool:
        return self.env == "development"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'neuronav.db'}"

    @property
    def storage(self) -> Path:
        return self.storage_dir or self.data_dir / "storage"

    def master_key_bytes(self) -> bytes:
        try:
            key = bytes.fromhex(self.master_key)
        except ValueError as exc:
            raise ConfigError("NEURONAV_MASTER_KEY must be 64 hex digits (a 256-bit key)") from exc
        if len(key) != 32:
            raise ConfigError("NEURONAV_MASTER_KEY must be 64 hex digits (a 256-bit key)")
        return key


def _check_secret(name: str, value: str, minimum: int) -> None:
    if value.strip().lower() in PLACEHOLDERS or len(value) < minimum:
        raise ConfigError(
            f"NEURONAV_{name.upper()} is missing or a placeholder; set a real secret of at least {minimum} characters"
        )


def _dev_secrets(settings: Settings) -> dict[str, str]:
    """Secrets generated once for development mode, kept in <data>/secrets.json (0600)."""
    path = settings.data_dir / "secrets.json"
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
    else:
        data = {}
    missing = [name for name in GENERATED_SECRETS if not data.get(name)]
    if missing:
        for name in missing:
            data[name] = secrets.token_hex(32)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the data folder: the service's only
        tmp = path.with_name(".secrets.json.partial")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        tmp.replace(path)
    return data


def load_settings() -> Settings:
    """Settings from the environment; secrets checked (production) or generated (development)."""
    settings = Settings()
    if settings.development:
        generated = _dev_secrets(settings)
        updates = {name: generated[name] for name in GENERATED_SECRETS if not getattr(settings, name)}
        settings = settings.model_copy(update=updates)
    else:
        _check_secret("master_key", settings.master_key, 64)
        _check_secret("secret_key", settings.secret_key, 32)
        _check_secret("pseudonym_key", settings.pseudonym_key, 32)
        if settings.metrics_token:
            _check_secret("metrics_token", settings.metrics_token, 32)
    settings.master_key_bytes()
    return settings


def read_settings() -> Settings:
    """Settings from the environment as they are: no secret generated, read or checked.

    For the non-secret fields (model folders, threads) in code that must not write
    ``<data>/secrets.json`` as a side effect; read again on each call (not cached). An invalid value
    is a :class:`ConfigError` naming the variable.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"NEURONAV_{'_'.join(str(p) for p in e['loc']).upper()} {e['msg'].lower()}, not {e['input']!r}"
            for e in exc.errors()
        )
        raise ConfigError(problems) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (call ``get_settings.cache_clear()`` in tests after changing the environment)."""
    return load_settings()
