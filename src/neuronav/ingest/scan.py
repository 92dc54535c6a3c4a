"""Scan user paths into an :class:`Inventory`: studies → series → instances, problems listed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from neuronav.errors import NeuroNavError
from neuronav.ingest.limits import DEFAULT_LIMITS, Limits
from neuronav.ingest.model import Inventory, Problem, Series, Study
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
                data = None if source.member is None else reader.read(source)
                header = read_header(source, data, limits)
            except NeuroNavError as exc:
                inv.problems.append(Problem(str(source), getattr(exc, "problem", str(exc))))
                continue
            inst = header.instance
            if inst.sop_instance_uid in seen:
                inv.duplicates += 1
                continue
            seen.add(inst.sop_instance_uid)
            study = inv.studies.get(inst.study_instance_uid)
            if study is None:
                ds = header.dataset
                study = inv.studies[inst.study_instance_uid] = Study(
                    study_instance_uid=inst.study_instance_uid,
                    patient=patient_identity(ds),
                    study_date=str(ds.get("StudyDate", "") or ""),
                    study_description=str(ds.get("StudyDescription", "") or ""),
                )
            series = study.series.get(inst.series_instance_uid)
            if series is None:
                series = study.series[inst.series_instance_uid] = Series(
                    series_instance_uid=inst.series_instance_uid,
                    study_instance_uid=inst.study_instance_uid,
                    metadata=series_metadata(header.dataset),
                )
            series.instances.append(inst)
    return inv
