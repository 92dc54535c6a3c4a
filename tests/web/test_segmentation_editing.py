"""In the browser: a radiologist rejects an AI lesion, then paints with NiiVue's brush and saves; each is a
new segmentation version, checked through the API against the images it serves (the AI's original kept)."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest
from playwright.sync_api import Browser, expect

from tests.web.conftest import LiveServer, coloured_pixels, phantom_zip, sign_in, upload_and_wait

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]


def _labels(server: LiveServer, headers: dict[str, str], study_id: str, image: str) -> np.ndarray:
    r = httpx.get(f"{server.url}/api/studies/{study_id}/images/{image}", headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(r.content)).dataobj).astype(np.uint8)


def _voxel_ml(server: LiveServer, headers: dict[str, str], study_id: str) -> float:
    r = httpx.get(f"{server.url}/api/studies/{study_id}/images/segmentation", headers=headers, timeout=60)
    affine = nib.Nifti1Image.from_bytes(gzip.decompress(r.content)).affine
    return float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0


def test_reject_a_lesion_and_paint_with_the_brush_each_saved_as_a_version(
    browser: Browser, live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    study_id = upload_and_wait(live_server, phantom_zip(tmp_path_factory.mktemp("edit"), seed=521))
    headers = {"Authorization": f"Bearer {live_server.token('radiologist')}"}
    base = f"{live_server.url}/api/studies/{study_id}/segmentations"
    manifest = httpx.get(f"{live_server.url}/api/studies/{study_id}/viewer", headers=headers, timeout=30).json()
    lesions = manifest["lesions"]
    assert lesions, "the phantom's glioma is segmented"
    ai = _labels(live_server, headers, study_id, "segmentation")

    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, live_server, "radiologist")
    page.goto(f"{live_server.url}/#/study/{study_id}")
    canvas = page.locator("#viewer-canvas")
    expect(canvas).to_have_attribute("data-rendered", "true", timeout=60000)
    status = page.locator(".seg-version")
    expect(status).to_have_text("Segmentation: AI original")

    # -- reject lesion 1 --------------------------------------------------------------------------------
    page.get_by_role("group", name="Lesion 1", exact=True).get_by_role("button", name="Reject").click()
    page.get_by_role("button", name="Save lesion decisions").click()
    expect(status).to_contain_text("Edited v2 by Dr Radiologist", timeout=60000)  # the page reloaded
    versions = httpx.get(base, headers=headers, timeout=30).json()
    assert versions["current_version"] == 2
    assert versions["versions"][1]["changes"]["rejected_lesions"] == [1]
    v2 = _labels(live_server, headers, study_id, "segmentation")
    assert np.count_nonzero(v2) < np.count_nonzero(ai) and not np.any(v2[ai == 0])
    assert np.array_equal(_labels(live_server, headers, study_id, "segmentation-ai"), ai)  # the original kept

    # -- paint enhancing tumour with the brush across the crosshair, save ----------------------------
    expect(canvas).to_have_attribute("data-rendered", "true", timeout=60000)
    page.get_by_label("Layout").select_option("axial")
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Edit mask").click()
    expect(page.get_by_role("button", name="Save as new version")).to_be_visible(timeout=30000)
    page.get_by_label("Pen").select_option(label="Enhancing tumour")
    page.get_by_label("Brush size (voxels)").fill("4")
    page.get_by_label("Brush size (voxels)").dispatch_event("change")
    _, cross = coloured_pixels(canvas.screenshot())
    row, col = int(np.argmax(cross.sum(axis=1))), int(np.argmax(cross.sum(axis=0)))
    box = canvas.bounding_box()
    assert box is not None
    x0, y0 = box["x"] + col - 30, box["y"] + row + 25
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 60, y0, steps=12)
    page.mouse.up()
    page.get_by_role("button", name="Save as new version").click()
    expect(status).to_contain_text("Edited v3 by Dr Radiologist", timeout=60000)
    versions = httpx.get(base, headers=headers, timeout=30).json()
    assert versions["current_version"] == 3 and versions["versions"][2]["changes"]["painted"] is True
    v3 = _labels(live_server, headers, study_id, "segmentation")
    changed = v3 != v2
    assert changed.sum() >= 20, "the brush stroke changed no voxels"
    assert np.all(v3[changed] == 3)  # every painted voxel is the pen's label
    assert versions["versions"][2]["changes"]["voxels_changed"] == int(changed.sum())
    report = httpx.get(f"{live_server.url}/api/reports/{manifest['report_id']}", headers=headers, timeout=30).json()
    seg = report["findings"]["segmentation"]
    assert seg["edited"]["version"] == 3 and seg["edited"]["edited_by"] == "Dr Radiologist"
    # the report's enhancing volume is the painted map's label-3 voxels × the voxel volume of its grid
    vox_ml = _voxel_ml(live_server, headers, study_id)
    assert seg["volumes"]["enhancing_ml"] == pytest.approx(np.count_nonzero(v3 == 3) * vox_ml, abs=2e-4)
    assert not [e for e in errors if "favicon" not in e], errors
    ctx.close()
