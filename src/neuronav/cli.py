"""The ``neuronav`` command: thin entry points over the library. Errors → one line, exit code ≠ 0."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from neuronav import __version__
from neuronav.errors import NeuroNavError

app = typer.Typer(
    name="neuronav",
    help="NeuroNav: AI analysis of brain MRI (research software, not for clinical use).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(code)


def _scan(paths: list[Path]) -> Any:
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from neuronav.ingest import scan
    from neuronav.series import identify_inventory

    if err.is_terminal:
        with Progress(
            SpinnerColumn(), TextColumn("reading headers: {task.completed} files"), console=err, transient=True
        ) as bar:
            task = bar.add_task("scan", total=None)
            inv = scan(paths, progress=lambda n: bar.update(task, completed=n))
    else:
        inv = scan(paths)
    identify_inventory(inv)
    return inv


def _report_problems(problems: list[Any]) -> None:
    for p in problems:
        err.print(f"{p.severity}: {p.source}: {p.problem}", markup=False, highlight=False)


@app.command()
def version() -> None:
    """Print the NeuroNav version."""
    out.print(__version__)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files, folders (recursive) or zip archives")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Print the study / series inventory of DICOM files, folders or zip archives."""
    from neuronav.convert import series_summary
    from neuronav.volume.dicom import check_series_geometry

    inv = _scan(paths)
    rows = []
    for study in inv.studies.values():
        for s in sorted(study.series.values(), key=lambda s: s.metadata.series_number or 0):
            rows.append((study, s, check_series_geometry(s)))
    if as_json:
        doc = {
            "files_seen": inv.files_seen,
            "instances": inv.n_instances,
            "duplicates": inv.duplicates,
            "studies": [
                {
                    "StudyInstanceUID": st.study_instance_uid,
                    "study_date": st.study_date,
                    "study_description": st.study_description,
                    "series": [
                        dict(series_summary(s), volume_problem=check_series_geometry(s)) for s in st.series.values()
                    ],
                }
                for st in inv.studies.values()
            ],
            "problems": [{"source": p.source, "problem": p.problem, "severity": p.severity} for p in inv.problems],
        }
        out.print_json(json.dumps(doc, default=str))
    else:
        table = Table(
            title=f"{len(inv.studies)} studies, {len(rows)} series, {inv.n_instances} images "
            f"({inv.files_seen} files read, {inv.duplicates} duplicates, {len(inv.problems)} skipped)"
        )
        for col in ("Study date", "#", "Description", "Sequence", "Images", "Size", "Spacing (mm)", "Volume"):
            table.add_column(col)
        for study, s, problem in rows:
            m = s.metadata
            spacing = "×".join(f"{v:g}" for v in m.pixel_spacing) if m.pixel_spacing else "?"
            seq = s.sequence.sequence.value if s.sequence is not None else "?"
            table.add_row(
                study.study_date,
                str(m.series_number or ""),
                m.series_description,
                seq,
                str(s.n_frames),
                f"{m.columns}×{m.rows}",
                spacing,
                problem or "ok",
            )
        if rows:
            out.print(table)
        else:
            out.print(table.title)
        _report_problems(inv.problems)
    if inv.n_instances == 0:
        raise _fail("no usable DICOM images found in the given paths")


@app.command()
def convert(
    paths: Annotated[list[Path], typer.Argument(help="files, folders (recursive) or zip archives")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")],
    include_phi: Annotated[bool, typer.Option("--include-phi", help="write patient identity into sidecars")] = False,
) -> None:
    """Write one NIfTI per series plus a JSON sidecar of its metadata (no PHI unless asked)."""
    from neuronav.convert import convert_inventory

    inv = _scan(paths)
    _report_problems(inv.problems)
    written, problems = convert_inventory(inv, out_dir, include_phi=include_phi)
    _report_problems(problems)
    for c in written:
        out.print(str(c.nifti), markup=False, highlight=False)
    if not written:
        raise _fail("no series could be converted")


@app.command()
def phantom(
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")],
    seed: Annotated[int, typer.Option(help="random seed; same seed → same study")] = 0,
    lesion: Annotated[str, typer.Option(help="glioma | meningioma | metastasis | none")] = "glioma",
    fmt: Annotated[str, typer.Option("--format", help="dicom | nifti")] = "dicom",
    profile: Annotated[str, typer.Option(help="acquisition geometry profile")] = "clinical",
    haemorrhage: Annotated[
        bool | None, typer.Option("--haemorrhage/--no-haemorrhage", help="force a haemorrhage on or off")
    ] = None,
) -> None:
    """Write a synthetic 4-sequence study (T1, T1c, T2, FLAIR) with known ground truth."""
    from neuronav.phantom import generate_study

    started = time.perf_counter()
    study = generate_study(out_dir, seed=seed, lesion=lesion, fmt=fmt, haemorrhage=haemorrhage, profile=profile)
    for s in study.series:
        out.print(f"{s.name:6s} {s.geometry:40s} {s.n_files:4d} files  {s.path}", markup=False, highlight=False)
    out.print(f"truth: {study.out_dir / 'truth.json'}  ({time.perf_counter() - started:.1f} s)", markup=False)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")] = Path("demo-output"),
    seed: Annotated[int, typer.Option(help="phantom seed")] = 42,
) -> None:
    """The main job on a demo phantom study: generate it, ingest it, identify sequences, build volumes."""
    from neuronav.convert import convert_inventory
    from neuronav.phantom import generate_study

    out.print(f"[bold]NeuroNav {__version__}[/] — demo on a synthetic phantom study (not for clinical use)")
    study = generate_study(out_dir / "phantom", seed=seed, lesion="glioma", fmt="dicom")
    out.print(f"phantom study written: {sum(s.n_files for s in study.series)} DICOM files in {out_dir / 'phantom'}")
    ingest([out_dir / "phantom" / "dicom"], as_json=False)
    inv = _scan([out_dir / "phantom" / "dicom"])
    written, problems = convert_inventory(inv, out_dir / "nifti")
    _report_problems(problems)
    out.print(f"{len(written)} volumes written to {out_dir / 'nifti'}")
    truth = study.truth
    out.print(
        f"ground truth: {truth.get('lesion_type')} lesion, whole tumour "
        f"{truth.get('volumes_ml', {}).get('whole_tumour', 0):.1f} mL, "
        f"midline shift {truth.get('midline_shift_mm', 0):.1f} mm (see {study.out_dir / 'truth.json'})"
    )
    out.print(
        "[yellow]The analysis engine (segmentation, measurements, report) is not built yet; "
        "this demo stops at volumes.[/]"
    )


def main() -> None:
    try:
        app()
    except NeuroNavError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
