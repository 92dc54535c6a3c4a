"""The worklist: one query per page, the same for every role and every edge.

Flagged studies (tumour detected) first, then newest first; a technician sees the status of their own
uploads only, a break-glass limited to one study lists that study only. ``q`` matches a substring of
the pseudonym or the description, ignoring case, and — for the roles that may see identity
(:func:`~neuronav.security.access.identity_open`) — the patient's MRN, accession number or name
(word prefixes, ignoring case and accents) through the keyed blind index
(:mod:`neuronav.workflow.search_index`): no row is decrypted to search. Those roles see the name, MRN,
birth date and accession of the rows of the page (only the page is decrypted). A page is one
statement (the page of studies, the latest analysis and report of each, and the total), built once
per dialect and set of filters.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    FromClause,
    Integer,
    Row,
    Select,
    String,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

from neuronav.db.models import AnalysisRow, OrderRow, ReportRow, StudyRow, StudySearchTokenRow
from neuronav.security import blind_index
from neuronav.security.access import Actor, breakglass_study, identity_open
from neuronav.security.permissions import Role
from neuronav.storage import decrypt_field
from neuronav.storage.store import ObjectStore
from neuronav.workflow.access import audit_event
from neuronav.workflow.search_index import search_key
from neuronav.workflow.studies import AnalysisOut, StudyOut, StudyPage


def _search_text(dialect: str) -> ColumnElement[str]:
    """What the worklist search matches: ``lower(pseudonym ␟ description)`` (U+001F between the two, so
    a search term, which never holds it, cannot match across them). On PostgreSQL this is the
    expression of the trigram index ``ix_studies_search_trgm`` (migration 0005), written with literals
    only: the planner uses the index only for the very same expression."""
    empty: ColumnElement[str] = literal_column("''")
    separator = func.chr(literal_column("31")) if dialect == "postgresql" else func.char(literal_column("31"))
    pseudonym, description = (
        func.coalesce(StudyRow.patient_pseudonym, empty),
        func.coalesce(StudyRow.description, empty),
    )
    text = pseudonym.concat(separator).concat(description)
    return func.lower(text, type_=String)


def _holds(name: str) -> ColumnElement[bool]:
    return exists().where(
        StudySearchTokenRow.study_id == StudyRow.id,
        StudySearchTokenRow.token.in_(bindparam(name, expanding=True)),
    )


def _identity_match(words: int) -> ColumnElement[bool]:
    """A study holding a token of ``exact`` (the whole term as MRN or accession) or a token of every set
    ``tokens0`` … (one per word, as name prefixes): indexed lookups of ``study_search_tokens``, never a
    decryption. ``words`` is one more than the number of word sets (0: no identity search)."""
    by_name = [_holds(f"tokens{i}") for i in range(words - 1)]
    return or_(_holds("exact"), and_(*by_name)) if by_name else _holds("exact")


def _worklist_filters(
    dialect: str,
    technician: bool,
    state: bool,
    flagged: bool,
    search: bool,
    since: bool,
    one_study: bool,
    words: int = 0,
    identity: bool = False,
) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a worklist query, with bound parameters of the same names."""
    where: list[ColumnElement[bool]] = []
    if one_study:  # a break-glass limited to one study
        where.append(StudyRow.id == bindparam("only_study", type_=String))
    if technician:
        where.append(StudyRow.uploaded_by == bindparam("uploaded_by", type_=String))
    if state:
        where.append(StudyRow.state == bindparam("state", type_=String))
    if flagged:
        where.append(StudyRow.flagged == bindparam("flagged", type_=Boolean))
    if search:
        text = _search_text(dialect).like(func.lower(bindparam("pattern", type_=String)), escape="/")
        where.append(or_(text, _identity_match(words)) if words else text)
    if since:
        where.append(StudyRow.uploaded_at >= bindparam("since", type_=DateTime(timezone=True)))
    return where


@functools.lru_cache(maxsize=256)
def _worklist_query(
    dialect: str,
    technician: bool,
    state: bool,
    flagged: bool,
    search: bool,
    since: bool,
    one_study: bool,
    words: int = 0,
    identity: bool = False,
) -> Select[Any]:
    """One statement for a worklist page: the page of studies, the latest analysis and report of each,
    and the total number of matching studies (one round trip instead of four). Built once per dialect
    and set of filters (parameters: the filters', ``limit`` and ``offset``)."""
    where = _worklist_filters(dialect, technician, state, flagged, search, since, one_study, words, identity)
    offset: ColumnElement[int] = bindparam("offset", type_=Integer)
    if dialect == "postgresql":
        # the value hidden in a subquery: the planner, which has no idea of the table's size before its
        # first ANALYZE, would otherwise sort every study for a deep page rather than walk the worklist
        # index (20 ms against 4 with 10,000 studies)
        offset = select(offset).scalar_subquery()
    columns: list[Any] = [
        StudyRow.id,
        StudyRow.state,
        StudyRow.flagged,
        StudyRow.uploaded_at,
        StudyRow.patient_pseudonym,
        StudyRow.study_date,
        StudyRow.description,
        StudyRow.sequences,
        StudyRow.n_files,
    ]
    if identity:  # ciphertext; only the page's rows are decrypted (_worklist_item)
        columns += [StudyRow.patient_name_enc, StudyRow.patient_id_enc, StudyRow.patient_birth_date_enc]
        columns.append(StudyRow.accession_enc)
    if search:  # one scan of the matches for the page and the total: rechecking each match is the cost
        columns.append(func.count().over().label("total"))
    page = (
        select(*columns)
        .where(*where)
        .order_by(StudyRow.flagged.desc(), StudyRow.uploaded_at.desc())
        .limit(bindparam("limit", type_=Integer))
        .offset(offset)
        .subquery("page")
    )
    order_state = (
        select(OrderRow.state)
        .where(OrderRow.study_id == page.c.id)
        .order_by(OrderRow.received_at.desc())
        .limit(1)
        .scalar_subquery()
        .label("o_state")
    )  # the HL7 order the study answers (orders.study_id is indexed)
    extra: list[ColumnElement[Any]] = [order_state]
    if not search:  # the total from the index-ordered walk would need every row: counted apart
        extra.append(select(func.count()).select_from(StudyRow).where(*where).scalar_subquery().label("total"))
    a_cols = (
        AnalysisRow.id,
        AnalysisRow.study_id,
        AnalysisRow.state,
        AnalysisRow.progress,
        AnalysisRow.stage,
        AnalysisRow.error,
        AnalysisRow.attempts,
        AnalysisRow.created_at,
        AnalysisRow.finished_at,
        AnalysisRow.seconds,
        AnalysisRow.result["report_id"].as_string().label("report_id"),
    )
    latest_a = select(*a_cols).where(AnalysisRow.study_id == page.c.id).order_by(AnalysisRow.created_at.desc()).limit(1)
    latest_r = (
        select(ReportRow.id, ReportRow.status)
        .where(ReportRow.study_id == page.c.id)
        .order_by(ReportRow.updated_at.desc())
        .limit(1)
    )
    a: FromClause
    r: FromClause
    if dialect == "postgresql":  # LATERAL: an index lookup per page row
        a, r = latest_a.lateral("a"), latest_r.lateral("r")
        joined = page.outerjoin(a, true()).outerjoin(r, true())
    else:  # SQLite has no LATERAL; it runs the correlated subquery per page row, then a primary-key lookup
        a = select(*a_cols).subquery("a")
        r = select(ReportRow.id, ReportRow.status).subquery("r")
        a_id = latest_a.with_only_columns(AnalysisRow.id).scalar_subquery()
        r_id = latest_r.with_only_columns(ReportRow.id).scalar_subquery()
        joined = page.outerjoin(a, a.c.id == a_id).outerjoin(r, r.c.id == r_id)
    return (
        select(
            page,
            *(a.c[str(c.key)].label(f"a_{c.key}") for c in latest_a.selected_columns),
            r.c.id.label("r_id"),
            r.c.status.label("r_status"),
            *extra,
        )
        .select_from(joined)
        .order_by(page.c.flagged.desc(), page.c.uploaded_at.desc())
    )


@functools.lru_cache(maxsize=256)
def _worklist_count(
    dialect: str,
    technician: bool,
    state: bool,
    flagged: bool,
    search: bool,
    since: bool,
    one_study: bool,
    words: int = 0,
    identity: bool = False,
) -> Select[Any]:
    where = _worklist_filters(dialect, technician, state, flagged, search, since, one_study, words, identity)
    return select(func.count()).select_from(StudyRow).where(*where)


_IDENTITY_COLUMNS = (
    ("patient_name", "patient_name_enc", "studies.patient_name"),
    ("patient_id", "patient_id_enc", "studies.patient_id"),
    ("patient_birth_date", "patient_birth_date_enc", "studies.patient_birth_date"),
    ("accession_number", "accession_enc", "studies.accession"),
)


def _worklist_item(row: Row[Any], field_key: bytes | None) -> StudyOut:
    m = row._mapping
    latest = {str(k)[2:]: v for k, v in m.items() if str(k).startswith("a_")}  # the a_* columns
    fields = {name: m[name] for name in StudyOut.model_fields if name in m and name != "sequences"}
    if field_key is not None:
        for name, column, aad in _IDENTITY_COLUMNS:
            fields[name] = decrypt_field(m[column], field_key, aad) if m[column] else None
    return StudyOut(
        **fields,
        sequences=sorted(m["sequences"] or ()),
        analysis=AnalysisOut.model_validate(latest) if latest["id"] is not None else None,
        report_id=m["r_id"],
        report_status=m["r_status"],
        order_state=m["o_state"],
    )


def list_studies(
    db: Session,
    actor: Actor,
    *,
    store: ObjectStore | None = None,
    state: str | None = None,
    flagged: bool | None = None,
    q: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> StudyPage:
    """The worklist: flagged studies (tumour detected) first, then newest first. Technicians see the
    status of their own uploads only. ``q`` matches a substring of the pseudonym or the description,
    ignoring case, and (given ``store``, for the roles that may see identity) the MRN, accession number
    or name prefixes through the blind index; those roles see the identity of the page's rows."""
    term = "".join(ch for ch in q or "" if ch.isprintable() and ch not in "%_")  # no wildcards, no U+001F
    identity = store is not None and identity_open(actor)
    wanted = blind_index.term_tokens(search_key(store), term) if (identity and term and store) else None
    params: dict[str, Any] = {
        "uploaded_by": actor.id,
        "state": state,
        "flagged": flagged,
        "pattern": "%" + term.replace("/", "//") + "%",  # "/" escapes itself (ESCAPE '/')
        "since": since,
        "limit": limit,
        "offset": offset,
        "only_study": breakglass_study(actor),
    }
    if wanted is not None:
        params["exact"] = sorted(wanted.exact)
        params.update({f"tokens{i}": sorted(tokens) for i, tokens in enumerate(wanted.words)})
    shape = (
        db.get_bind().dialect.name,
        actor.role == Role.TECHNICIAN,
        bool(state),
        flagged is not None,
        bool(term),
        since is not None,
        params["only_study"] is not None,
        0 if wanted is None else 1 + len(wanted.words),
        identity,
    )
    rows = db.execute(_worklist_query(*shape), params).all()
    if rows:
        total = int(rows[0].total)
    elif offset:  # past the end: the page is empty, the total is not
        total = int(db.scalar(_worklist_count(*shape), params) or 0)
    else:
        total = 0
    audit_event(
        db,
        actor,
        "study.list",
        detail={"count": len(rows), "offset": offset, "identity": identity, "searched": bool(term)},
    )
    key = store.field_key() if (identity and store is not None) else None
    return StudyPage(items=[_worklist_item(row, key) for row in rows], total=total, limit=limit, offset=offset)


__all__ = ["list_studies"]
