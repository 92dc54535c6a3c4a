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
from rich.text import Text

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
    inv = _scan(paths)
    _print_inventory(inv, as_json)
    if inv.n_instances == 0:
        raise _fail("no usable DICOM images found in the given paths")


def _print_inventory(inv: Any, as_json: bool) -> None:
    from neuronav.convert import series_summary
    from neuronav.volume.dicom import check_series_geometry

    rows = [
        (study, s, check_series_geometry(s))
        for study in inv.studies.values()
        for s in sorted(study.series.values(), key=lambda s: (s.metadata.series_number or 0, s.series_instance_uid))
    ]
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
                        dict(series_summary(s), volume_problem=problem) for study, s, problem in rows if study is st
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
            cells = (
                study.study_date,
                str(m.series_number or ""),
                m.series_description,
                seq,
                str(s.n_frames),
                f"{m.columns}×{m.rows}",
                spacing,
                problem or "ok",
            )
            table.add_row(*(Text(c) for c in cells))  # DICOM text is data, never rich markup
        if rows:
            out.print(table)
        else:
            out.print(table.title)
        _report_problems(inv.problems)


@app.command()
def convert(
    paths: Annotated[list[Path], typer.Argument(help="files, folders (recursive) or zip archives")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")],
    include_phi: Annotated[bool, typer.Option("--include-phi", help="write patient identity into sidecars")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="write into a non-empty output folder")] = False,
) -> None:
    """Write one NIfTI per series plus a JSON sidecar of its metadata (no PHI unless asked)."""
    from neuronav.convert import convert_inventory

    inv = _scan(paths)
    _report_problems(inv.problems)
    written, problems = convert_inventory(inv, out_dir, include_phi=include_phi, overwrite=overwrite)
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


def _progress_bar(title: str) -> Any:
    """A rich progress bar on a terminal, else None (plain output for logs and pipes)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if not err.is_terminal:
        return None
    return Progress(
        TextColumn(title + " {task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


@app.command()
def analyze(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="DICOM files, folders or zips of ONE study, or a NIfTI folder / zip (BraTS case, BIDS anat, "
            "files named after their sequence)"
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")] = Path("neuronav-output"),
    t1: Annotated[Path | None, typer.Option("--t1", help="NIfTI T1")] = None,
    t1c: Annotated[Path | None, typer.Option("--t1c", help="NIfTI T1 post-contrast")] = None,
    t2: Annotated[Path | None, typer.Option("--t2", help="NIfTI T2")] = None,
    flair: Annotated[Path | None, typer.Option("--flair", help="NIfTI FLAIR")] = None,
    prior: Annotated[Path | None, typer.Option("--prior", help="folder of a prior analysis (findings.json)")] = None,
    model: Annotated[str | None, typer.Option("--model", help="segmentation model NAME[@VERSION]")] = None,
    debug_dir: Annotated[Path | None, typer.Option("--debug-dir", help="save every preprocessing step")] = None,
    formats: Annotated[
        str | None,
        typer.Option(
            "--formats", help="also write the report: json,pdf,seg,sr,epdf,sc,fhir-r4,fhir-r4b,fhir-r5,hl7 or all"
        ),
    ] = None,
    paper: Annotated[str, typer.Option(help="PDF paper size: A4 or Letter")] = "A4",
    pseudonymous: Annotated[
        bool, typer.Option(help="write the report without the patient's identity (research); default: clinical")
    ] = False,
) -> None:
    """Analyse one study: findings.json, segmentation.nii.gz, probability.nii.gz, reference.nii.gz in --out."""
    from datetime import UTC, datetime

    from neuronav.report.outputs import parse_formats

    wanted = parse_formats(formats) if formats else []
    paper_size = _paper(paper)
    received = datetime.now(UTC)
    from neuronav.analysis.inputs import from_nifti, from_paths
    from neuronav.analysis.pipeline import analyze as run_analysis
    from neuronav.analysis.pipeline import summary

    nifti = {k: v for k, v in (("T1", t1), ("T1c", t1c), ("T2", t2), ("FLAIR", flair)) if v is not None}
    if nifti and paths:
        raise _fail("give DICOM paths or --t1/--t1c/--t2/--flair NIfTI files, not both")
    if not nifti and not paths:
        raise _fail("nothing to analyse: give DICOM paths or --t1/--t1c/--t2/--flair NIfTI files")
    inputs = from_nifti(nifti) if nifti else from_paths(paths or [])
    from neuronav.report.outputs import DICOM_FORMATS, start_helper

    if inputs.kind != "dicom" and DICOM_FORMATS & set(wanted):
        raise _fail(
            f"{', '.join(sorted(DICOM_FORMATS & set(wanted)))} need DICOM input (they join the source study in "
            "PACS); these inputs are NIfTI: drop those formats or analyse the DICOM study"
        )
    for seq, name in inputs.files.items():  # NIfTI: which file is which sequence
        err.print(f"{seq}: {name}", markup=False, highlight=False)
    for note in inputs.notes:
        err.print(f"warning: {note}", markup=False, highlight=False)
    start_helper(wanted)  # the Secondary Capture helper process starts while the study is analysed
    bar = _progress_bar("analysing")
    if bar is None:
        findings = run_analysis(inputs, out_dir, model=model, prior=prior, debug_dir=debug_dir)
    else:
        with bar:
            task = bar.add_task("", total=1.0)
            findings = run_analysis(
                inputs,
                out_dir,
                model=model,
                prior=prior,
                debug_dir=debug_dir,
                progress=lambda stage, f: bar.update(task, completed=f, description=stage),
            )
    out.print_json(json.dumps(summary(findings)))
    out.print(f"findings: {out_dir / 'findings.json'}", markup=False, highlight=False)
    if wanted:
        from neuronav.report.build import build_report
        from neuronav.report.export import export

        report = build_report(findings, analysis_dir=out_dir, received=received)
        series = inputs.series.get(findings.study.reference_sequence)
        from neuronav.config import read_settings

        written = export(
            report,
            wanted,
            out_dir,
            analysis_dir=out_dir,
            series=series,
            paper=paper_size,
            identified=not pseudonymous,
            assigning_authority=read_settings().assigning_authority or None,
            identity=inputs.patient,
        )
        _print_written(report, written, identified=not pseudonymous and inputs.patient is not None)


def _paper(text: str) -> Any:
    sizes = {"a4": "A4", "letter": "Letter"}
    if text.lower() not in sizes:
        raise _fail(f"unknown paper size {text!r}; use A4 or Letter")
    return sizes[text.lower()]


def _print_written(report: Any, written: Any, *, identified: bool) -> None:
    kind = "clinical: the patient's identity from the DICOM" if identified else "pseudonymous"
    out.print(f"report {report.report_id} v{report.version} ({report.status}, {kind}):", markup=False, highlight=False)
    for fmt, paths in written.files.items():
        shown = str(paths[0]) if len(paths) == 1 else f"{len(paths)} files in {paths[0].parent}"
        out.print(f"  {fmt:8s} {shown}  ({written.seconds[fmt] * 1000:.0f} ms)", markup=False, highlight=False)
    for fmt, note in written.notes.items():
        out.print(f"  {fmt:8s} {note}", markup=False, highlight=False)


@app.command()
def report(
    source: Annotated[Path, typer.Argument(help="analysis folder, its findings.json, or a report JSON")],
    formats: Annotated[
        str, typer.Option("--format", "--formats", help="json,pdf,seg,sr,epdf,sc,fhir-r4,fhir-r4b,fhir-r5,hl7 or all")
    ] = "json,pdf",
    out_dir: Annotated[Path | None, typer.Option("--out", help="output folder (default: beside the input)")] = None,
    dicom: Annotated[
        list[Path] | None, typer.Option("--dicom", help="the source DICOM study (for seg, sr, epdf, sc)")
    ] = None,
    paper: Annotated[str, typer.Option(help="PDF paper size: A4 or Letter")] = "A4",
    overwrite: Annotated[bool, typer.Option(help="replace another report already in the output folder")] = False,
    pseudonymous: Annotated[
        bool, typer.Option(help="write it without the patient's identity (research); default: clinical")
    ] = False,
) -> None:
    """Write the report of an analysis (or re-export a stored, possibly signed, report) in the given formats."""
    from neuronav.report.export import check_target, export, load_for_export
    from neuronav.report.outputs import parse_formats

    wanted = parse_formats(formats)
    paper_size = _paper(paper)
    rep, analysis_dir = load_for_export(source)
    target = out_dir or (source if source.is_dir() else source.parent)
    check_target(rep, target, overwrite=overwrite)
    from neuronav.config import read_settings

    written = export(
        rep,
        wanted,
        target,
        analysis_dir=analysis_dir,
        dicom=dicom or [],
        paper=paper_size,
        identified=not pseudonymous,
        assigning_authority=read_settings().assigning_authority or None,
    )
    _print_written(rep, written, identified=not pseudonymous and bool(dicom))


@app.command()
def evaluate(
    cases: Annotated[int, typer.Option(help="unseen phantom studies per kind and per seed set")] = 12,
    seed: Annotated[int, typer.Option(help="first seed (evaluation seeds lie below 1,000,000)")] = 0,
    second_seed: Annotated[
        int | None,
        typer.Option("--second-seed", help="first seed of a second set: both run, and their spread is reported"),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="dicom (with skull, as a scanner writes it), brats (skull-stripped BraTS cases) or both"
        ),
    ] = "dicom",
    work: Annotated[Path, typer.Option(help="working folder")] = Path("neuronav-evaluation"),
    model: Annotated[str | None, typer.Option("--model", help="segmentation model NAME[@VERSION]")] = None,
    keep: Annotated[bool, typer.Option(help="keep every generated study and analysis")] = False,
    record: Annotated[bool, typer.Option("--record-in-cards", help="write the metrics into the model cards")] = False,
) -> None:
    """Dice, HD95, volume, detection, centroid, midline and classification metrics on unseen phantoms:
    DICOM studies with skull, BraTS-format cases, or both side by side (per-kind means, and the spread
    between two seed sets with --second-seed)."""
    from neuronav.analysis.evaluate import KINDS, evaluate_kinds

    kinds = KINDS if fmt == "both" else (fmt,)
    if fmt != "both" and fmt not in KINDS:
        raise _fail(f"unknown --format {fmt!r}; choose dicom, brats or both")
    seeds = [seed] if second_seed is None else [seed, second_seed]

    def report(done: int, total: int, r: Any) -> None:
        err.print(
            f"[{done}/{total}] {r.kind:5s} seed {r.seed} {r.lesion:10s} {r.profile:8s} dice {r.dice} "
            f"detected {r.detected} class {r.predicted_class} ({r.seconds:.1f} s)",
            markup=False,
            highlight=False,
        )

    summary = evaluate_kinds(cases, seeds, work, kinds=kinds, model=model, keep=keep, progress=report)
    printable = {k: v for k, v in summary.items() if k != "per_case"}
    out.print_json(json.dumps(printable, default=str))
    out.print(f"details: {work / 'evaluation.json'}", markup=False)
    if record:
        from neuronav.training.run import record_evaluation

        command = (
            f"neuronav evaluate --cases {cases} --seed {seed} --format {fmt}"
            + (f" --second-seed {second_seed}" if second_seed is not None else "")
            + (f" --model {model}" if model else "")
        )
        for folder in record_evaluation(summary, command):
            out.print(f"card updated: {folder / 'card.json'}", markup=False)


models_app = typer.Typer(help="List and register models.", no_args_is_help=False)
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    verify: Annotated[bool, typer.Option("--verify", help="check every file's sha256 against its card")] = False,
) -> None:
    """List the installed models (shipped and registered), with their checksums and metrics."""
    if ctx.invoked_subcommand is not None:
        return
    from neuronav.analysis.models import model_rows

    rows = model_rows(verify=verify)
    if not rows:
        raise _fail(
            "no models installed (the shipped ones are package data in neuronav/shipped_models, "
            "or in NEURONAV_MODELS_DIR when set)"
        )
    table = Table(title=f"{len(rows)} models (not for clinical use)")
    for col in rows[0]:
        table.add_column(str(col))
    for row in rows:
        table.add_row(*(Text(str(v)) for v in row.values()))
    out.print(table)


@models_app.command("register")
def models_register(
    path: Annotated[Path, typer.Argument(help="an ONNX file, or a MONAI bundle folder / zip (TorchScript)")],
    card: Annotated[Path, typer.Option("--card", help="model card JSON (must say 'not for clinical use')")],
    output_transform: Annotated[str | None, typer.Option(help="softmax | brats_regions | none (MONAI bundles)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a registered model of the same name and version")] = False,
) -> None:
    """Register a site's own model (ONNX, or a MONAI bundle converted to ONNX) with its card."""
    from neuronav.analysis.models import register_model

    transforms = ("softmax", "brats_regions", "none")
    if output_transform is not None and output_transform not in transforms:
        raise _fail(f"--output-transform must be one of {', '.join(transforms)}")
    registered = register_model(path, card, output_transform=output_transform, overwrite=overwrite)  # type: ignore[arg-type]
    out.print(
        f"registered {registered.name}@{registered.version} ({registered.task}, sha256 {registered.sha256[:12]})",
        markup=False,
        highlight=False,
    )


@app.command()
def train(
    what: Annotated[str, typer.Argument(help="segmentation | heads")],
    member: Annotated[str | None, typer.Option(help="segmentation ensemble member (seg-a, seg-b)")] = None,
    cache: Annotated[Path, typer.Option(help="folder for the rendered training cases")] = Path(".cache/training"),
    workers: Annotated[int, typer.Option(help="processes rendering training cases")] = 2,
    steps: Annotated[int | None, typer.Option(help="override the number of training steps")] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option("--models-dir", help="where the model folders are written [default: NEURONAV_MODELS_DIR]"),
    ] = None,
) -> None:
    """Reproduce a shipped model from its recipe (seeded, synthetic data; needs the train extra)."""
    from neuronav.training.run import train_heads, train_segmentation_member

    if what == "segmentation":
        if member is None:
            raise _fail("--member is required for segmentation (seg-a or seg-b)")
        train_segmentation_member(
            member,
            cache,
            models_dir,
            workers=workers,
            steps=steps,
            log=lambda m: err.print(m, markup=False, highlight=False),
        )
    elif what == "heads":
        train_heads(cache, models_dir, workers=workers, log=lambda m: err.print(m, markup=False, highlight=False))
    else:
        raise _fail(f"unknown model family {what!r}; use segmentation or heads")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")] = Path("demo-output"),
    seed: Annotated[int, typer.Option(help="phantom seed")] = 42,
) -> None:
    """The main job on a demo phantom study: generate it, ingest it, analyse it, compare with the truth."""
    from neuronav.analysis.inputs import from_inventory
    from neuronav.analysis.pipeline import analyze as run_analysis
    from neuronav.analysis.pipeline import summary
    from neuronav.phantom import generate_study

    out.print(f"[bold]NeuroNav {__version__}[/] — demo on a synthetic phantom study (not for clinical use)")
    study_dir = out_dir / "phantom"
    study = generate_study(study_dir, seed=seed, lesion="glioma", fmt="dicom")
    out.print(f"phantom study written: {sum(s.n_files for s in study.series)} DICOM files in {study_dir}", markup=False)
    inv = _scan([study_dir / "dicom"])
    _print_inventory(inv, as_json=False)
    inputs = from_inventory(inv)
    findings = run_analysis(inputs, out_dir / "analysis")
    out.print_json(json.dumps(summary(findings)))
    truth = study.truth
    out.print(
        f"ground truth: {truth['lesion_type']} lesion, whole tumour {truth['volumes_ml']['whole_tumour']:.1f} mL, "
        f"midline shift {truth['midline_shift_mm']:.1f} mm (see {study_dir / 'truth.json'})",
        markup=False,
    )
    out.print(f"findings, segmentation and heatmap: {out_dir / 'analysis'}", markup=False, highlight=False)
    from neuronav.report.build import build_report
    from neuronav.report.export import export
    from neuronav.report.outputs import FORMATS

    report = build_report(findings, analysis_dir=out_dir / "analysis")
    series = inputs.series.get(findings.study.reference_sequence)
    written = export(
        report, FORMATS, out_dir / "report", analysis_dir=out_dir / "analysis", series=series, identity=inputs.patient
    )
    _print_written(report, written, identified=inputs.patient is not None)  # the phantom's synthetic identity


DEMO_DICOM_PORT = 11112


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    demo: Annotated[
        bool, typer.Option(help="create demo users and an analysed phantom study first; DICOM listener on 11112")
    ] = False,
) -> None:
    """Run the NeuroNav service (embedded defaults: SQLite, local encrypted storage, in-process worker),
    with the DICOM listener when NEURONAV_DICOM_PORT is set (who may send: `neuronav nodes add --incoming`)."""
    import uvicorn

    from neuronav.config import get_settings
    from neuronav.service.app import create_app

    settings = get_settings()
    if demo and settings.dicom_port is None:
        if _port_free(host, DEMO_DICOM_PORT):
            settings = settings.model_copy(update={"dicom_port": DEMO_DICOM_PORT})
        else:
            err.print(f"demo: port {DEMO_DICOM_PORT} is in use, no DICOM listener (set NEURONAV_DICOM_PORT)")
    if demo:
        from neuronav.db.session import migrate, session_scope
        from neuronav.workflow.nodes import DEMO_NODE, ensure_demo_node

        migrate(settings.database)
        with session_scope(settings.database) as db:
            if ensure_demo_node(db):
                out.print(f"demo DICOM node {DEMO_NODE.name}: storescu on this machine may send", markup=False)
    if settings.dicom_port is not None and not settings.dicom_host:
        settings = settings.model_copy(update={"dicom_host": host})
    if demo:
        from neuronav.workflow.operations import demo_setup

        err.print("demo: creating users and analysing a phantom study (about 30 s the first time)…")
        accounts, study_id = demo_setup(settings)
        for acc in accounts:
            line = f"demo {acc.role:12s} {acc.email}  one-time password: {acc.password}"
            if acc.totp_secret:
                line += f"  TOTP secret: {acc.totp_secret}"
            out.print(line, markup=False, highlight=False)
        if not accounts:
            out.print("demo users exist already (their passwords were shown when they were made)", markup=False)
        out.print(f"demo study {study_id} analysed", markup=False, highlight=False)
    where = f"http://{host}:{port}"
    out.print(
        f"NeuroNav {__version__} on {where} (API docs {where}/docs) — database "
        f"{settings.database.split('://', 1)[0]}, worker {'Celery' if settings.broker_url else 'embedded'}",
        markup=False,
        highlight=False,
    )
    if settings.dicom_port is not None:
        out.print(
            f"DICOM listener {settings.dicom_ae_title} on {settings.dicom_host}:{settings.dicom_port} "
            "(senders: neuronav nodes add NAME --ae AE --host HOST --port PORT --incoming)",
            markup=False,
            highlight=False,
        )
    served = create_app(settings)
    # proxy_headers off: uvicorn would believe X-Forwarded-For from loopback; the app decides the client
    # address from NEURONAV_TRUSTED_PROXIES (neuronav.service.deps.client_address). Headers due within
    # read_timeout_s, idle keep-alive closed after keep_alive_s, a connection limit (service/server.py)
    options = {**served.state.uvicorn_options, "proxy_headers": False}
    uvicorn.run(served, host=host, port=port, log_level="info", **options)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="jobs at once (each analysis uses the whole machine)")] = 1,
) -> None:
    """A Celery worker for analysis jobs (NEURONAV_BROKER_URL, same database and storage as the server)."""
    from neuronav.config import get_settings

    if not get_settings().broker_url:
        raise _fail("NEURONAV_BROKER_URL is not set: the server runs jobs itself (embedded worker)")
    from neuronav.workflow.celery_app import app as celery_app

    celery_app.worker_main(["worker", f"--concurrency={concurrency}", "--loglevel=INFO", "-Q", "neuronav-analysis"])


users_app = typer.Typer(help="Accounts from the command line (the first administrator).", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="e-mail address (the login)")],
    role: Annotated[str, typer.Option(help="technician | radiologist | neurologist | admin")],
    name: Annotated[str, typer.Option("--name", help="display name")],
    licence: Annotated[str | None, typer.Option(help="professional licence number")] = None,
) -> None:
    """Create an active account with a one-time password, to be changed at the first sign-in (and a
    TOTP secret for an admin)."""
    from neuronav.config import get_settings
    from neuronav.security import totp
    from neuronav.workflow.accounts import one_time_password
    from neuronav.workflow.operations import create_account

    password = one_time_password()
    secret = totp.new_secret() if role == "admin" else None
    create_account(
        get_settings(),
        email,
        password,
        role,
        display_name=name,
        active=True,
        licence=licence,
        totp_secret=secret,
        must_change_password=True,
    )
    out.print(
        f"{email} ({role}) one-time password: {password} (to be changed at the first sign-in)"
        + (f"  TOTP secret: {secret}" if secret else ""),
        markup=False,
        highlight=False,
    )


nodes_app = typer.Typer(help="The DICOM nodes: who may send studies, where results go.", no_args_is_help=True)
app.add_typer(nodes_app, name="nodes")


def _csv(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v.strip()]


@nodes_app.command("add")
def nodes_add(
    name: Annotated[str, typer.Argument(help="a short unique name (letters, digits, . _ -)")],
    ae: Annotated[str, typer.Option("--ae", help="the node's AE title")],
    host: Annotated[str, typer.Option("--host", help="host name or IP address")],
    port: Annotated[int, typer.Option("--port", help="its DICOM port")],
    incoming: Annotated[bool, typer.Option("--incoming", help="it may send studies to NeuroNav")] = False,
    send: Annotated[str | None, typer.Option("--send", help="results it receives: seg,sr,epdf,sc")] = None,
    on: Annotated[str | None, typer.Option("--on", help="when: preliminary,final")] = None,
    default_route: Annotated[
        bool, typer.Option("--default-route", help="results of the studies it sent go back to it")
    ] = False,
) -> None:
    """Register a DICOM node (audited)."""
    from pydantic import ValidationError

    from neuronav.config import get_settings
    from neuronav.db.session import require_current, session_scope
    from neuronav.workflow.nodes import NodeIn, add_node

    try:
        node = NodeIn.model_validate(  # the texts as typed: the model normalises and checks them
            {"name": name, "ae_title": ae, "host": host, "port": port, "incoming": incoming, "send": _csv(send),
             "send_on": _csv(on), "default_route": default_route}
        )  # fmt: skip
    except ValidationError as exc:
        raise _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    settings = get_settings()
    require_current(settings.database)
    with session_scope(settings.database) as db:
        added = add_node(db, None, node)
    out.print(f"DICOM node {added.name} added ({added.ae_title}@{added.host}:{added.port})", markup=False)


@nodes_app.command("list")
def nodes_list(as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """The registered DICOM nodes."""
    from neuronav.config import get_settings
    from neuronav.db.session import require_current, session_scope
    from neuronav.workflow.nodes import list_nodes

    settings = get_settings()
    require_current(settings.database)
    with session_scope(settings.database) as db:
        found = list_nodes(db)
    if as_json:
        out.print_json(json.dumps([n.model_dump(mode="json") for n in found]))
        return
    if not found:
        out.print("no DICOM nodes (add one: neuronav nodes add NAME --ae AE --host HOST --port PORT)", markup=False)
    for n in found:
        out.print(
            f"{n.name:20s} {n.ae_title:16s} {n.host}:{n.port}  incoming={'yes' if n.incoming else 'no'}  "
            f"send={','.join(n.send) or '-'}  on={','.join(n.send_on) or '-'}"
            + ("  default-route" if n.default_route else ""),
            markup=False,
            highlight=False,
        )


@nodes_app.command("remove")
def nodes_remove(name: Annotated[str, typer.Argument(help="the node's name")]) -> None:
    """Remove a DICOM node (audited); it may no longer send, and receives nothing more."""
    from neuronav.config import get_settings
    from neuronav.db.session import require_current, session_scope
    from neuronav.workflow.nodes import remove_node

    settings = get_settings()
    require_current(settings.database)
    with session_scope(settings.database) as db:
        remove_node(db, None, name)
    out.print(f"DICOM node {name} removed", markup=False)


@nodes_app.command("received")
def nodes_received(
    state: Annotated[str | None, typer.Option(help="receiving | received | kept | failed")] = None,
) -> None:
    """Studies received over DICOM: waiting for their stable age, handed to analysis, or kept (and why)."""
    from neuronav.config import get_settings
    from neuronav.db.session import require_current, session_scope
    from neuronav.workflow.dicom import list_arrivals

    settings = get_settings()
    require_current(settings.database)
    with session_scope(settings.database) as db:
        found = list_arrivals(db, state=state)
    out.print_json(json.dumps([a.model_dump(mode="json") for a in found]))


keys_app = typer.Typer(help="Master keys of the encrypted storage.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-wrap every object's data key under the active NEURONAV_MASTER_KEY (old keys in NEURONAV_OLD_MASTER_KEYS)."""
    from neuronav.config import get_settings
    from neuronav.storage.store import ObjectStore

    result = ObjectStore.from_settings(get_settings()).rotate()
    out.print(str(result), markup=False, highlight=False)


@keys_app.command("retire")
def keys_retire(master_id: Annotated[str, typer.Argument(help="the id of the old master key (mk-…)")]) -> None:
    """Retire an old master key (refused while any object still uses it)."""
    from neuronav.config import get_settings
    from neuronav.storage.store import ObjectStore

    ObjectStore.from_settings(get_settings()).retire(master_id)
    out.print(f"retired {master_id}", markup=False, highlight=False)


@keys_app.command("status")
def keys_status() -> None:
    """Which master keys the stored objects use."""
    from neuronav.config import get_settings
    from neuronav.storage.store import ObjectStore

    for key_id, count in sorted(ObjectStore.from_settings(get_settings()).keys_in_use().items()):
        out.print(f"{key_id}  {count} objects", markup=False, highlight=False)


@app.command()
def verify(
    remove_unreferenced: Annotated[
        bool,
        typer.Option(
            "--remove-unreferenced",
            help="delete stored objects no database row names (left by an interrupted upload or job), "
            "if written more than an hour ago",
        ),
    ] = False,
) -> None:
    """Decrypt and hash every stored object; list corrupted or missing ones and cleartext left behind
    (decrypted studies in <data>/tmp no process uses, file names not encrypted) (exit 1 when any), and
    objects no database row names (debris of an interrupted upload or job; not an error)."""
    from neuronav.config import get_settings, read_settings
    from neuronav.db.session import require_current
    from neuronav.storage.store import ObjectStore
    from neuronav.workflow import operations as ops

    require_current(read_settings().database)  # before any secret is read (or made, in development)
    settings = get_settings()
    store = ObjectStore.from_settings(settings)
    if remove_unreferenced:
        for key in ops.remove_unreferenced(settings, store):
            out.print(f"{key}: removed (stored, but named by no database row)", markup=False, highlight=False)
    problems = ops.verify_storage(settings)
    for key in ops.unreferenced_objects(settings, store):
        out.print(
            f"{key}: stored but named by no database row (an interrupted upload or job; "
            "`neuronav verify --remove-unreferenced` removes it once an hour old)",
            markup=False,
            highlight=False,
        )
    for p in problems:
        out.print(p, markup=False, highlight=False)
    if problems:
        raise _fail(f"{len(problems)} problems: stored objects corrupted or missing, or patient data left in clear")
    out.print("every stored object verified", markup=False)


@app.command()
def backup(target: Annotated[Path, typer.Argument(help="a new, empty folder")]) -> None:
    """Back up the database and the (still encrypted) storage; the master key is NOT included."""
    from neuronav.config import get_settings
    from neuronav.workflow.operations import backup as run_backup

    manifest = run_backup(get_settings(), target)
    out.print(
        f"backup of {len(manifest['files'])} files in {target}; keep NEURONAV_MASTER_KEY apart from it",
        markup=False,
        highlight=False,
    )


@app.command()
def restore(source: Annotated[Path, typer.Argument(help="a folder made by neuronav backup")]) -> None:
    """Restore a backup (verified against its manifest first, every object verified after)."""
    from neuronav.config import get_settings
    from neuronav.workflow.operations import restore as run_restore

    n = run_restore(get_settings(), source)
    out.print(f"restored; {n} stored objects verified", markup=False, highlight=False)


db_app = typer.Typer(help="The database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the tables of a new database, or bring an existing one to this version's schema (back it up
    first: `neuronav backup DIR`). `neuronav serve` does this at start-up too."""
    from neuronav.config import get_settings
    from neuronav.db.session import head_revision, migrate, schema_revision
    from neuronav.storage.store import ObjectStore
    from neuronav.workflow.operations import encrypt_stored_names, index_unsearchable

    settings = get_settings()
    before = schema_revision(settings.database)
    migrate(settings.database)
    after = head_revision()
    store = ObjectStore.from_settings(settings)
    encrypted = encrypt_stored_names(settings, store)  # needs the field key (0007)
    if encrypted:
        out.print(f"{encrypted} stored file names encrypted", markup=False, highlight=False)
    indexed = index_unsearchable(settings, store)  # the worklist's search tokens (0011) need the keys too
    if indexed:
        out.print(f"{indexed} studies indexed for the worklist search", markup=False, highlight=False)
    if before == after:
        out.print(f"database already at schema {after}", markup=False, highlight=False)
    else:
        out.print(f"database upgraded from {before or 'empty'} to schema {after}", markup=False, highlight=False)


@db_app.command("reindex-search")
def db_reindex_search() -> None:
    """Rebuild the worklist's search tokens (keyed blind index of MRN, accession and name) of every study;
    `neuronav db upgrade` and the server's start-up index the studies that have none."""
    from neuronav.config import get_settings
    from neuronav.db.session import require_current, session_scope
    from neuronav.storage.store import ObjectStore
    from neuronav.workflow.search_index import reindex_all

    settings = get_settings()
    require_current(settings.database)
    with session_scope(settings.database) as db:
        done = reindex_all(db, ObjectStore.from_settings(settings))
    out.print(f"{done} studies indexed for the worklist search", markup=False, highlight=False)


@db_app.command("status")
def db_status() -> None:
    """The database's schema version and the one this NeuroNav needs (changes nothing; exit 1 when they differ)."""
    from neuronav.config import read_settings
    from neuronav.db.session import head_revision, schema_revision

    have, want = schema_revision(read_settings().database), head_revision()
    out.print(f"database schema {have or 'none (empty)'}; this NeuroNav needs {want}", markup=False, highlight=False)
    if have != want:
        raise _fail("run `neuronav db upgrade`")


audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    anchor: Annotated[
        str | None,
        typer.Option(
            help="SEQ:HASH printed earlier by `neuronav audit head`: that event must still be there, unchanged"
        ),
    ] = None,
) -> None:
    """Check the hash chain; name the first altered, deleted or reordered event (exit 1)."""
    from neuronav import audit as audit_log
    from neuronav.config import read_settings
    from neuronav.db.session import require_current, session_scope

    try:
        kept = audit_log.Anchor.parse(anchor) if anchor is not None else None
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    settings = read_settings()  # no secret needed, none made
    require_current(settings.database)
    with session_scope(settings.database) as db:
        problem = audit_log.verify(db, anchor=kept)
    if problem is not None:
        raise _fail(str(problem))
    out.print("audit trail intact" + (f", anchor {kept.seq} present" if kept else ""), markup=False)


@audit_app.command("head")
def audit_head() -> None:
    """Print the newest event as SEQ:HASH; keep it outside this server (ticket, log shipper, paper) and
    give it to `neuronav audit verify --anchor` later: a cut-off or rewritten tail then shows."""
    from neuronav import audit as audit_log
    from neuronav.config import read_settings
    from neuronav.db.session import require_current, session_scope

    settings = read_settings()  # no secret needed, none made
    require_current(settings.database)
    with session_scope(settings.database) as db:
        newest = audit_log.head(db)
    if newest is None:
        raise _fail("the audit log is empty")
    out.print(str(newest), markup=False, highlight=False)


@audit_app.command("ship")
def audit_ship() -> None:
    """Ship the newest event's anchor (SEQ:HASH) once to NEURONAV_AUDIT_ANCHOR_SINK (file:/path or
    syslog+tls://host:port), as the server does every NEURONAV_AUDIT_ANCHOR_INTERVAL_S seconds."""
    from neuronav.config import read_settings
    from neuronav.db.session import require_current
    from neuronav.workflow.anchors import ship

    settings = read_settings()  # no secret needed, none made
    require_current(settings.database)
    shipped = ship(settings)
    if shipped is None:
        raise _fail("the audit log is empty: nothing to ship")
    out.print(f"shipped {shipped}", markup=False, highlight=False)


destinations_app = typer.Typer(
    help="Where reports are sent (HL7 v2 over MLLP, FHIR REST, DICOMweb STOW-RS; DICOM nodes: `nodes add`) "
    "and the outbox.",
    no_args_is_help=True,
)
app.add_typer(destinations_app, name="destinations")


def _secret_file(path: Path | None) -> str | None:
    return path.read_text(encoding="utf-8").strip() if path is not None else None


@destinations_app.command("add")
def destinations_add(
    name: Annotated[str, typer.Argument(help="a short name: letters, digits, . _ -")],
    kind: Annotated[str, typer.Option("--kind", help="hl7 | fhir | dicomweb (DICOM nodes: `neuronav nodes add`)")],
    host: Annotated[str | None, typer.Option(help="hl7: the receiver's host")] = None,
    port: Annotated[int | None, typer.Option(help="hl7: the receiver's MLLP port")] = None,
    tls: Annotated[bool, typer.Option(help="hl7: MLLP over TLS")] = False,
    ca_file: Annotated[Path | None, typer.Option(help="CA certificates the peer is checked against")] = None,
    pdf: Annotated[str | None, typer.Option(help="the PDF: embed | reference (hl7: an RP link) | none")] = None,
    receiving_application: Annotated[str | None, typer.Option(help="hl7: MSH-5")] = None,
    receiving_facility: Annotated[str | None, typer.Option(help="hl7: MSH-6")] = None,
    base_url: Annotated[str | None, typer.Option(help="fhir: the FHIR base URL; dicomweb: the DICOMweb root")] = None,
    fhir_version: Annotated[str | None, typer.Option("--fhir-version", help="fhir: R4 | R4B | R5")] = None,
    auth: Annotated[
        str | None, typer.Option(help="fhir: none | bearer | client_credentials; dicomweb: none | basic | bearer")
    ] = None,
    token_file: Annotated[Path | None, typer.Option(help="fhir, dicomweb: a file holding the bearer token")] = None,
    username: Annotated[str | None, typer.Option(help="dicomweb: the user of basic authentication")] = None,
    password_file: Annotated[Path | None, typer.Option(help="dicomweb: a file holding its password")] = None,
    outputs: Annotated[str | None, typer.Option(help="dicomweb: seg,sr,epdf,sc (default seg,sr,epdf)")] = None,
    timeout_s: Annotated[float | None, typer.Option("--timeout-s", help="seconds to wait for the peer")] = None,
    token_url: Annotated[str | None, typer.Option(help="fhir: the OAuth2 token endpoint")] = None,
    client_id: Annotated[str | None, typer.Option(help="fhir: the OAuth2 client id")] = None,
    client_secret_file: Annotated[Path | None, typer.Option(help="fhir: a file holding the client secret")] = None,
    scope: Annotated[str | None, typer.Option(help="fhir: OAuth2 scope, e.g. system/*.write")] = None,
    conditional: Annotated[
        str | None, typer.Option(help="fhir: server | client (resolve conditional entries by searches first)")
    ] = None,
    mrn_system: Annotated[str | None, typer.Option(help="fhir: the hospital's identifier system for MRNs")] = None,
    accession_system: Annotated[str | None, typer.Option(help="fhir: its identifier system for accessions")] = None,
    events: Annotated[str, typer.Option(help="when: preliminary,final,amendment")] = "final,amendment",
    pseudonymous: Annotated[bool, typer.Option(help="send pseudonymous outputs (no identity)")] = False,
) -> None:
    """Add a destination: signed reports are queued for it and delivered by the server's outbox."""
    from neuronav.config import get_settings
    from neuronav.db.session import require_current, session_scope
    from neuronav.storage.store import ObjectStore
    from neuronav.workflow.deliveries import add_destination

    values = {
        "host": host,
        "port": port,
        "tls": tls if kind == "hl7" else None,
        "ca_file": str(ca_file) if ca_file else None,
        "pdf": pdf,
        "receiving_application": receiving_application,
        "receiving_facility": receiving_facility,
        "base_url": base_url,
        "version": fhir_version,
        "auth": auth,
        "token_url": token_url,
        "client_id": client_id,
        "scope": scope,
        "conditional": conditional,
        "mrn_system": mrn_system,
        "accession_system": accession_system,
        "username": username,
        "timeout_s": timeout_s,
    }
    config = {k: v for k, v in values.items() if v is not None}
    secrets = {
        "token": _secret_file(token_file),
        "client_secret": _secret_file(client_secret_file),
        "password": _secret_file(password_file),
    }
    settings = get_settings()
    require_current(settings.database)
    store = ObjectStore.from_settings(settings)
    with session_scope(settings.database) as db:
        made = add_destination(
            db,
            store,
            None,
            name,
            kind,
            config,
            secrets={k: v for k, v in secrets.items() if v},
            events=[e.strip() for e in events.split(",") if e.strip()],
            identified=not pseudonymous,
            outputs=[o.strip().lower() for o in outputs.split(",") if o.strip()] if outputs else None,
        )
    out.print(
        f"destination {made.name} ({made.kind}, {'clinical' if made.identified else 'pseudonymous'}) added: "
        f"{', '.join(made.outputs)} on {', '.join(made.events)}",
        markup=False,
        highlight=False,
    )


@destinations_app.command("list")
def destinations_list() -> None:
    """Every destination (secrets are not shown, only whether they are set)."""
    from neuronav.config import get_settings
    from neuronav.db.session import require_current, session_scope
    from neuronav.storage.store import ObjectStore
    from neuronav.workflow.deliveries import list_destinations

    settings = get_settings()
    require_current(settings.database)
    with session_scope(settings.database) as db:
        rows = list_destinations(db, ObjectStore.from_settings(settings), None)
    for d in rows:
        where = d.config.get("base_url") or f"{d.config.get('host', '')}:{d.config.get('port', '')}"
        out.print(
            f"{d.name:16s} {d.kind:6s} {where}  {','.join(d.outputs)}  on {','.join(d.events)}  "
            f"{'clinical' if d.identified else 'pseudonymous'}"
            + (f"  secrets: {','.join(d.secrets_set)}" if d.secrets_set else ""),
            markup=False,
            highlight=False,
        )
    if not rows:
        out.print("no destinations", markup=False)


@destinations_app.command("remove")
def destinations_remove(name: Annotated[str, typer.Argument(help="the destination's name")]) -> None:
    """Remove a destination and its delivery records (the audit trail keeps what was sent)."""
    from neuronav.config import get_settings
    from neuronav.db.session import require_current, session_scope
    from neuronav.workflow.deliveries import remove_destination

    settings = get_settings()
    require_current(settings.database)
    with session_scope(settings.database) as db:
        remove_destination(db, None, name)
    out.print(f"destination {name} removed", markup=False, highlight=False)


@destinations_app.command("deliveries")
def destinations_deliveries(
    state: Annotated[str | None, typer.Option(help="queued | sending | delivered | failed")] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 50,
) -> None:
    """The outbox: each delivery's state, attempts and the peer's answer."""
    from neuronav.config import get_settings
    from neuronav.db.session import require_current, session_scope
    from neuronav.workflow.deliveries import list_deliveries

    settings = get_settings()
    require_current(settings.database)
    with session_scope(settings.database) as db:
        rows = list_deliveries(db, None, state=state, limit=limit)
    for d in rows:
        out.print(
            f"{d.id}  {d.destination:16s} {d.report_id} v{d.report_version} {d.output:8s} {d.state:9s} "
            f"attempts {d.attempts}  {d.peer_status or ''}  {d.error or ''}",
            markup=False,
            highlight=False,
        )


@destinations_app.command("resend")
def destinations_resend(delivery_id: Annotated[str, typer.Argument(help="the delivery's id")]) -> None:
    """Queue a failed (or delivered) delivery again; the server's outbox sends it."""
    from neuronav.config import get_settings
    from neuronav.db.session import require_current, session_scope
    from neuronav.workflow.deliveries import resend

    settings = get_settings()
    require_current(settings.database)
    with session_scope(settings.database) as db:
        d = resend(db, None, delivery_id)
    out.print(f"delivery {d.id} queued again", markup=False, highlight=False)


hl7_app = typer.Typer(help="The HL7 order listener (NEURONAV_HL7_LISTEN).", no_args_is_help=True)
app.add_typer(hl7_app, name="hl7")


@hl7_app.command("rejected")
def hl7_rejected(
    show: Annotated[bool, typer.Option(help="print each message too (it names a patient)")] = False,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 20,
) -> None:
    """The HL7 messages the listener refused (AE / AR) and why."""
    from neuronav.config import get_settings
    from neuronav.db.session import require_current, session_scope
    from neuronav.storage.store import ObjectStore
    from neuronav.workflow.orders import rejected_messages

    settings = get_settings()
    require_current(settings.database)
    with session_scope(settings.database) as db:
        rows = rejected_messages(db, ObjectStore.from_settings(settings) if show else None, None, limit=limit)
    for r in rows:
        out.print(f"{r.received_at.isoformat()}  {r.peer or '?':15s} {r.ack_code}  {r.reason}", markup=False)
        if show and r.message:
            out.print("  " + r.message.replace("\r", "\n  "), markup=False, highlight=False)
    if not rows:
        out.print("no rejected messages", markup=False)


@app.command()
def deid(
    paths: Annotated[list[Path], typer.Argument(help="DICOM files, folders or zips")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")],
    retain_dates: Annotated[
        bool, typer.Option(help="Retain Longitudinal Temporal Information (Modified Dates): shift dates per patient")
    ] = True,
    retain_patient_characteristics: Annotated[
        bool, typer.Option(help="Retain Patient Characteristics: keep age, sex, size, weight")
    ] = True,
) -> None:
    """De-identify DICOM (PS3.15 Basic Profile, retain longitudinal dates (shifted) and patient characteristics)."""
    from neuronav.deid import Deidentifier
    from neuronav.pseudonym import pseudonym_key

    deidentifier = Deidentifier(
        pseudonym_key(), retain_dates=retain_dates, retain_patient_characteristics=retain_patient_characteristics
    )
    result = deidentifier.files(paths, out_dir)
    out.print_json(json.dumps(result.summary()))


def main() -> None:
    try:
        app()
    except NeuroNavError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        err.print(f"error: {where}{exc.strerror or exc}", markup=False, highlight=False)
        sys.exit(2)
    except Exception as exc:  # a bug: one line for the user, the type for the report
        err.print(
            f"error: unexpected failure ({type(exc).__name__}: {exc}); please report it", markup=False, highlight=False
        )
        sys.exit(3)


if __name__ == "__main__":
    main()
