"""The DICOM objects written for a report keep their UIDs across exports of the same content (a PACS that
receives them twice keeps one copy) and get new ones when the content, status or signature changes."""

from __future__ import annotations

from neuronav.report.dicom_pdf import make_encapsulated_pdf
from neuronav.report.dicom_seg import make_seg
from neuronav.report.dicom_sr import make_sr
from neuronav.report.lifecycle import edit, sign
from neuronav.report.model import Patient, Report
from tests.report.conftest import Analysed


def uids(report: Report, analysed: Analysed) -> dict[str, tuple[str, str]]:
    seg = make_seg(report, analysed.analysis_dir, analysed.source)
    sr = make_sr(report, analysed.source, seg=seg, analysis_dir=analysed.analysis_dir)
    pdf = make_encapsulated_pdf(report, b"%PDF-1.4\n%%EOF\n", analysed.source)
    return {
        name: (str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
        for name, ds in (("seg", seg), ("sr", sr), ("pdf", pdf))
    }


def test_the_same_report_exported_twice_has_the_same_uids(report: Report, analysed: Analysed) -> None:
    first = uids(report, analysed)
    assert uids(report, analysed) == first
    every = [uid for pair in first.values() for uid in pair]
    assert len(set(every)) == len(every)  # each series and instance its own UID
    identified = report.identified(Patient(name="Doe^Jane", mrn="123"))
    assert uids(identified, analysed) == first  # the identity carried is not part of the content


def test_an_edit_or_a_signature_gives_new_uids(report: Report, analysed: Analysed) -> None:
    before = uids(report, analysed)
    edited = edit(report, {"/narrative/impression": "Reviewed impression."}, who="Dr A", role="radiologist")
    after_edit = uids(edited, analysed)
    signed = uids(sign(edited, who="Dr A", role="radiologist"), analysed)
    for name in before:
        assert len({before[name][1], after_edit[name][1], signed[name][1]}) == 3, name
