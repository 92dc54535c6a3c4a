"""Reading in Chromium: the 2×2 hanging protocol opens by default, linked (a slice step on one view moves
the others: their slice readouts and pixels), and stays put when the first pane's sequence changes; a
saved measurement is drawn again after a reload where it was saved (pixels of screenshots with and
without the measurement layer, located against the crosshair), the value on the image is the saved
value, and its author drags it to a new place where the server measures it again."""

from __future__ import annotations

import io
import re

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect

from tests.web.conftest import LiveServer, Studies, coloured_pixels, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

GRID_TIMEOUT = 240000  # software WebGL on a shared 2-core machine: four volumes through the CPU


def _z_mm(text: str) -> float:
    found = re.search(r"z (-?\d+\.\d) mm", text)
    assert found, f"no axial position in the corner text {text!r}"
    return float(found.group(1))


def _readouts(page: Page) -> list[str]:
    return page.locator(".stage .pane:not([hidden]) .corner.bl").all_inner_texts()


def test_the_hanging_protocol_opens_linked_and_stays_put(
    browser: Browser, live_server: LiveServer, analysed_study: Studies
) -> None:
    token = live_server.token("radiologist")
    manifest = httpx.get(
        f"{live_server.url}/api/studies/{analysed_study.current}/viewer",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    sign_in(page, live_server, "radiologist")
    page.goto(f"{live_server.url}/#/study/{analysed_study.current}")
    stage = page.locator(".stage")
    expect(stage).to_have_attribute("data-grid-ready", "true", timeout=GRID_TIMEOUT)
    expect(page.get_by_label("Layout")).to_have_value("grid")
    canvases = stage.locator("canvas")
    expect(canvases).to_have_count(5)  # four panes and the (hidden) prior's
    others = stage.locator("canvas[data-sequence]").evaluate_all("els => els.map(e => e.dataset.sequence)")
    assert len(others) == 3 and manifest["reference_sequence"] not in others
    assert set(others) | {manifest["reference_sequence"]} == {"T1", "T1c", "T2", "FLAIR"}
    boxes = [c.bounding_box() for c in canvases.all()[:4]]
    assert all(b and b["width"] > 250 and b["height"] > 250 for b in boxes), boxes
    # two columns, two rows
    assert len({round(b["x"]) for b in boxes if b}) == 2 and len({round(b["y"]) for b in boxes if b}) == 2

    # a slice step on the first view: every view follows to the same scanner position
    page.wait_for_timeout(1000)
    before = _readouts(page)
    assert len(before) == 4
    other = stage.locator(f"canvas[data-sequence='{others[0]}']")
    shot_before = other.screenshot()
    page.locator("#viewer-canvas").focus()
    for _ in range(4):
        page.keyboard.press("ArrowUp")
    for _ in range(60):
        if all(a != b for a, b in zip(_readouts(page), before, strict=True)):
            break
        page.wait_for_timeout(500)
    else:
        raise AssertionError(f"not every view followed the slice step: {before} → {_readouts(page)}")
    page.wait_for_timeout(1500)  # the software renderer finishes the frame
    after = _readouts(page)
    z_before, z_after = [_z_mm(t) for t in before], [_z_mm(t) for t in after]
    assert z_after[0] > z_before[0] + 2.0, (z_before, z_after)  # four slices up
    assert all(abs(z - z_after[0]) < 0.6 for z in z_after), z_after  # the same position in every view
    assert other.screenshot() != shot_before, "the linked view's pixels did not change"

    # another sequence in the first pane: the layout stays put (same grid, same pane sizes)
    page.get_by_label("Sequence", exact=True).select_option(f"sequence-{others[0]}")
    expect(page.locator("#status")).to_contain_text(f"Showing {others[0]}", timeout=120000)
    expect(page.get_by_label("Layout")).to_have_value("grid")
    assert [c.bounding_box() for c in canvases.all()[:4]] == boxes
    ctx.close()


def _magenta(png: bytes) -> np.ndarray:
    """The measurement's strokes (#ff5cff) in a screenshot."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    return (rgb[..., 0] > 190) & (rgb[..., 2] > 190) & (rgb[..., 1] < 150)


def _crosshair_centre(canvas: Locator) -> tuple[int, int]:
    _, cross = coloured_pixels(canvas.screenshot())
    assert cross.sum() > 50, "the crosshair is not drawn"
    return int(np.argmax(cross.sum(axis=1))), int(np.argmax(cross.sum(axis=0)))


def _drawn_box(page: Page) -> tuple[float, float, float, float]:
    """Where the measurement layer adds magenta pixels to the first pane: (row, column) of the centre, and
    the height and width of what it adds (screenshots with and without the layer)."""
    box = page.locator("figure.pane:has(#viewer-canvas) .canvas-box")
    layer = box.locator(".measure-layer")
    with_layer = _magenta(box.screenshot())
    layer.evaluate("el => (el.style.visibility = 'hidden')")
    without = _magenta(box.screenshot())
    layer.evaluate("el => (el.style.visibility = '')")
    added = with_layer & ~without
    assert added.sum() > 40, "the saved measurement is not drawn"
    rows, cols = np.nonzero(added)
    centre = ((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2)
    return centre[0], centre[1], rows.max() - rows.min(), cols.max() - cols.min()


def _label(page: Page, annotation_id: str) -> Locator:
    return page.locator(f"figure.pane:has(#viewer-canvas) g[data-annotation-id='{annotation_id}'] text.label")


def _value_text(values: dict[str, float]) -> str:
    return f"{values['area_mm2']:.1f} mm², mean {values['mean']:.1f} (SD {values['sd']:.1f})"


def _open_at_lesion(page: Page, url: str, study: str) -> None:
    page.goto(f"{url}/#/study/{study}")
    expect(page.locator(".stage")).to_have_attribute("data-grid-ready", "true", timeout=GRID_TIMEOUT)
    page.get_by_role("button", name="Jump to lesion").click()
    expect(page.locator("#status")).to_contain_text("centroid of lesion 1")
    page.wait_for_timeout(2000)  # the software renderer finishes the frame


def test_a_saved_measurement_is_redrawn_in_place_shows_its_saved_value_and_moves(
    browser: Browser, live_server: LiveServer, analysed_study: Studies
) -> None:
    headers = {"Authorization": f"Bearer {live_server.token('radiologist')}"}
    api = f"{live_server.url}/api"
    manifest = httpx.get(f"{api}/studies/{analysed_study.current}/viewer", headers=headers, timeout=30).json()
    c = [float(v) for v in manifest["lesions"][0]["centroid_ras_mm"]]
    # a square region of 16 mm centred on the lesion, on the axial plane through it (saved before the page opens)
    made = httpx.post(
        f"{api}/studies/{analysed_study.current}/annotations",
        headers=headers,
        json={
            "kind": "roi",
            "points_mm": [[c[0] - 8, c[1] - 8, c[2]], [c[0] + 8, c[1] + 8, c[2]]],
            "plane": "axial",
            "image": "reference",
        },
        timeout=60,
    )
    assert made.status_code == 201, made.text
    roi = made.json()
    try:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        sign_in(page, live_server, "radiologist")
        _open_at_lesion(page, live_server.url, analysed_study.current)
        canvas = page.locator("#viewer-canvas")
        expect(_label(page, roi["id"])).to_have_text(_value_text(roi["values"]))  # the saved value, on the image
        row, col = _crosshair_centre(canvas)
        r, q, height, width = _drawn_box(page)
        # centred on the lesion (the crosshair), square, and of a plausible size for 16 mm
        assert abs(r - row) <= 4 and abs(q - col) <= 4, ((r, q), (row, col))
        assert abs(height - width) <= 0.1 * width and 15 < width < 300, (height, width)

        # dragged down by its author (navigate tool): posterior on an axial view
        cbox = canvas.bounding_box()
        assert cbox is not None
        x, y = cbox["x"] + col, cbox["y"] + row
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x, y + 40, steps=8)
        page.mouse.up()
        expect(page.locator("#status")).to_contain_text("Moved:", timeout=60000)
        moved = next(
            a
            for a in httpx.get(f"{api}/studies/{analysed_study.current}/annotations", headers=headers).json()
            if a["id"] == roi["id"]
        )
        (p0, p1), (o0, o1) = moved["points_mm"], roi["points_mm"]
        dy = p0[1] - o0[1]
        assert dy < -3 and abs(dy - (p1[1] - o1[1])) < 1e-6, (moved["points_mm"], roi["points_mm"])
        assert abs(p0[0] - o0[0]) < 2 and p0[2] == o0[2] and p1[2] == o1[2]  # along the screen's vertical, same slice
        assert moved["values"] != roi["values"]  # measured again at the new place
        expect(_label(page, roi["id"])).to_have_text(_value_text(moved["values"]))

        # after a reload it is drawn at its new place: 40 px below the lesion
        page.reload()
        _open_at_lesion(page, live_server.url, analysed_study.current)
        row, col = _crosshair_centre(canvas)
        r, q, height, width = _drawn_box(page)
        assert abs(r - (row + 40)) <= 5 and abs(q - col) <= 4, ((r, q), (row, col))
        expect(_label(page, roi["id"])).to_have_text(_value_text(moved["values"]))
        ctx.close()
    finally:
        httpx.delete(f"{api}/annotations/{roi['id']}", headers=headers, timeout=30)
