"""End to end in Chromium: a technician uploads a phantom study through the page and follows the
analysis; a radiologist opens the viewer, sees the overlay at the lesion (pixels of a screenshot),
places a measurement with the mouse, signs the report and downloads the PDF."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.web.conftest import PASSWORD, LiveServer, coloured_pixels, phantom_zip, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]


def _crosshair(page: Page) -> tuple[np.ndarray, int, int]:
    """The overlay mask of the viewer's screenshot and the crosshair centre (row, column) in it."""
    overlay, cross = coloured_pixels(page.locator("#viewer-canvas").screenshot())
    assert cross.sum() > 50, "the crosshair is not drawn"
    return overlay, int(np.argmax(cross.sum(axis=1))), int(np.argmax(cross.sum(axis=0)))


def _overlay_near_crosshair(page: Page) -> tuple[int, int]:
    """(overlay pixels within 40 px of the crosshair centre, overlay pixels in the whole view)."""
    overlay, row, col = _crosshair(page)
    near = overlay[max(0, row - 40) : row + 41, max(0, col - 40) : col + 41]
    return int(near.sum()), int(overlay.sum())


def test_upload_analyse_view_measure_sign_download(
    browser: Browser, live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    study = phantom_zip(tmp_path_factory.mktemp("e2e"), seed=616, lesion="glioma")

    # -- the technician uploads through the page and follows the progress ------------------------
    tech = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = tech.new_page()
    sign_in(page, live_server, "technician")
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
    page.wait_for_load_state("networkidle")
    rows = page.locator("tr[data-study-id]")
    before = set(rows.evaluate_all("els => els.map(e => e.dataset.studyId)"))
    page.get_by_label("Study files (DICOM files or a zip)").set_input_files(str(study))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".upload-message")).to_contain_text("Study received", timeout=120000)
    # this upload's row (the worklist lists flagged studies first: other tests' studies may come before it)
    expect(rows).to_have_count(len(before) + 1, timeout=30000)
    (study_id,) = set(rows.evaluate_all("els => els.map(e => e.dataset.studyId)")) - before
    row = page.locator(f"tr[data-study-id='{study_id}']")
    expect(row).to_contain_text(re.compile("queued|running|done"))
    expect(row).to_contain_text("done", timeout=400000)  # the page polls while the analysis runs
    expect(row.get_by_role("link", name=re.compile("Open"))).to_have_count(0)  # technicians see status only
    tech.close()

    # -- the radiologist reads, measures, signs, downloads ---------------------------------------
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = ctx.new_page()
    page.on("dialog", lambda d: d.accept())
    sign_in(page, live_server, "radiologist")
    flagged = page.locator(f"tr[data-study-id='{study_id}']")
    expect(flagged).to_contain_text("Tumour detected")
    flagged.get_by_role("link", name=re.compile("Open study")).click()
    canvas = page.locator("#viewer-canvas")
    expect(canvas).to_have_attribute("data-rendered", "true", timeout=60000)
    assert page.evaluate("window.__neuronav.firstRenderMs") > 0

    page.get_by_label("Layout").select_option("axial")
    page.get_by_role("button", name="Jump to lesion").click()
    expect(page.locator("#status")).to_contain_text("centroid of lesion 1")
    page.wait_for_timeout(1500)  # let the software renderer finish the frame
    near_on, all_on = _overlay_near_crosshair(page)
    assert near_on > 200, f"no label overlay at the lesion centroid ({near_on} coloured pixels near it)"

    page.get_by_label("Overlay", exact=True).select_option("none")
    page.wait_for_timeout(2500)
    near_off, all_off = _overlay_near_crosshair(page)
    assert near_off < near_on / 10 and all_off < all_on / 10, (near_off, all_off, near_on, all_on)
    page.get_by_label("Overlay", exact=True).select_option("labels")
    for _ in range(30):  # the software renderer takes a few seconds per change on a 2-core machine
        page.wait_for_timeout(1000)
        if _overlay_near_crosshair(page)[0] > near_on / 2:
            break
    else:
        raise AssertionError("the overlay did not come back")

    # a distance measurement dragged with the mouse on the axial view
    page.get_by_text("Measure and annotate").click()
    page.get_by_label("Mouse tool").select_option("distance")
    canvas.scroll_into_view_if_needed()
    _, row, col = _crosshair(page)  # start on the image: at the lesion centroid
    box = canvas.bounding_box()
    assert box is not None
    x0, y0 = box["x"] + col, box["y"] + row
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 60, y0 + 30, steps=8)
    page.mouse.up()
    item = page.locator(".annotations li[data-kind='distance']")
    expect(page.locator("#status")).to_contain_text("Saved:", timeout=60000)
    expect(item).to_have_count(1, timeout=20000)
    expect(item).to_contain_text(re.compile(r"\d+\.\d mm"))
    expect(item).to_contain_text("Dr Radiologist")

    # the report: include the measurement, sign, download the PDF
    item.get_by_role("button", name="Include in report").click()
    expect(page.locator("#narrative-radiologist_comment")).to_have_value(
        re.compile("Reader measurement \\(Dr Radiologist\\): distance")
    )
    expect(page.locator(".report-status")).to_contain_text("preliminary")  # including moved no status
    page.get_by_role("button", name="Sign report…").click()
    dialog = page.get_by_role("dialog", name="Sign report")
    expect(dialog).to_contain_text("Meaning of the signature")
    dialog.get_by_label("Your password").fill("not my password")
    dialog.get_by_role("button", name="Sign report").click()
    expect(page.locator("#status")).to_contain_text("Not signed", timeout=10000)
    expect(page.locator(".report-status")).to_contain_text("not signed")
    page.get_by_role("button", name="Sign report…").click()
    dialog = page.get_by_role("dialog", name="Sign report")
    dialog.get_by_label("Your password").fill(PASSWORD)
    dialog.get_by_role("button", name="Sign report").click()
    expect(page.locator(".report-status")).to_contain_text("final")
    expect(page.locator(".signature-meaning")).to_contain_text("Approved")
    expect(page.get_by_role("button", name="Sign report…")).to_have_count(0)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download PDF").click()
    pdf = tmp_path / "report.pdf"
    info.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    ctx.close()

    # the server agrees: the report is signed with the measurement in it
    token = live_server.token("radiologist")
    detail = httpx.get(f"{live_server.url}/api/studies/{study_id}", headers={"Authorization": f"Bearer {token}"}).json()
    report = httpx.get(
        f"{live_server.url}/api/reports/{detail['report_id']}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert report["status"] == "final" and "distance" in report["narrative"]["radiologist_comment"]
