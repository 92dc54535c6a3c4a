"""Scan user paths into an :class:`Inventory`: studies → series → instances, problems listed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from neuronav.errors import NeuroNavError
from neuronav.ingest.limits import DEFAULT_LIMITS, Limits
from neuronav.ingest.model import Inventory, Problem, ScannedStudy, Series, Source
from neuronav.ingest.reader import patient_identity, read_header, series_metadata
from neuronav.ingest.sources import SourceReader, iter_sources

ProgressFn = Callable[[int], None]


def scan(
    paths: Iterable[str | Path],
    *,
    limits: Limits = DEFAULT_LIMITS,
    progress: ProgressFn | None = None,
) -> Inventory:
    """Read the headers of every file under ``paths`` (files, folder trees, zip archives).

    Never raises for bad files: each one skipped is listed in ``inventory.problems`` with its reason.
    Duplicate SOPInstanceUIDs are counted once (``inventory.duplicates``).
    """
    inv = Inventory()
    seen: set[str] = set()
    with SourceReader(limits) as reader:
        for source in iter_sources(paths, inv.problems, limits):
            inv.files_seen += 1
            if progress is not None:
                progress(inv.files_seen)
            try:
                _add(inv, seen, source, reader, limits)
            except NeuroNavError as exc:
                inv.problems.append(Problem(str(source), getattr(exc, "problem", str(exc))))
            except Exception as exc:  # hostile input must never crash a scan; the file is skipped instead
                inv.problems.append(
                    Problem(str(source), f"unreadable DICOM content ({type(exc).__name__}); file skipped")
                )
    return inv


def _add(inv: Inventory, seen: set[str], source: Source, reader: SourceReader, limits: Limits) -> None:
    data = None if source.member is None else reader.read(source)
    header = read_header(source, data, limits)
    inst = header.instance
    if inst.sop_instance_uid in seen:
        inv.duplicates += 1
        return
    study = inv.studies.get(inst.study_instance_uid)
    series = study.series.get(inst.series_instance_uid) if study is not None else None
    if study is None:
        ds = header.dataset
        study = ScannedStudy(
            study_instance_uid=inst.study_instance_uid,
            patient=patient_identity(ds),
            study_date=str(ds.get("StudyDate", "") or ""),
            study_description=str(ds.get("StudyDescription", "") or ""),
        )
    if series is None:
        series = Series(
            series_instance_uid=inst.series_instance_uid,
            study_instance_uid=inst.study_instance_uid,
            metadata=series_metadata(header.dataset),
        )
    # only now, with everything read, does the instance join the inventory
    seen.add(inst.sop_instance_uid)
    inv.studies.setdefault(inst.study_instance_uid, study)
    study.series.setdefault(inst.series_instance_uid, series)
    series.instances.append(inst)
