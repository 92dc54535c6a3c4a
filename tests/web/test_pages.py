"""Every page in Chromium: accessibility (axe-core: no serious or critical violation), the phone
viewport (390 x 844: no horizontal overflow, controls reachable), comparison with the prior study,
a refused upload's reason, and what each role is shown."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.web.conftest import AXE, LiveServer, Studies, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # axe is injected as a script: the page's CSP (script-src 'self') would refuse it
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    yield ctx
    ctx.close()


def axe_problems(page: Page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}}).then(r => r.violations.map("
        "v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))",
        AXE_TAGS,
    )
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {v['nodes']}"
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


def test_every_page_has_no_serious_accessibility_violation(
    context: BrowserContext, live_server: LiveServer, analysed_study: Studies
) -> None:
    page = context.new_page()
    page.goto(f"{live_server.url}/#/login")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    problems = {"login": axe_problems(page)}

    sign_in(page, live_server, "radiologist")
    expect(page.locator("tr[data-study-id]").first).to_be_visible()
    problems["worklist"] = axe_problems(page)

    page.goto(f"{live_server.url}/#/study/{analysed_study.current}")
    expect(page.locator("#viewer-canvas")).to_have_attribute("data-rendered", "true", timeout=60000)
    expect(page.locator(".report-status")).to_be_visible()
    problems["study"] = axe_problems(page)

    page.get_by_role("link", name="Open the full report").click()
    expect(page.get_by_role("heading", name=re.compile("^Report NN-"))).to_be_visible()
    expect(page.locator(".report-status")).to_be_visible()
    problems["report"] = axe_problems(page)

    admin = context.browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)  # type: ignore[union-attr]
    apage = admin.new_page()
    sign_in(apage, live_server, "admin")
    apage.goto(f"{live_server.url}/#/admin")
    expect(apage.get_by_role("heading", name="Audit log")).to_be_visible()
    expect(apage.locator("section[aria-labelledby='audit-h'] tbody tr").first).to_be_visible()
    problems["admin"] = axe_problems(apage)
    admin.close()

    assert all(not p for p in problems.values()), problems


def _no_horizontal_overflow(page: Page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px viewport"


def test_phone_worklist_and_viewer_are_usable(
    browser: Browser, live_server: LiveServer, analysed_study: Studies
) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = ctx.new_page()
    sign_in(page, live_server, "radiologist")
    row = page.locator(f"tr[data-study-id='{analysed_study.current}']")
    expect(row).to_be_visible()
    _no_horizontal_overflow(page)
    open_link = row.get_by_role("link", name=re.compile("Open study"))
    open_link.scroll_into_view_if_needed()
    box = open_link.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    open_link.tap()

    canvas = page.locator("#viewer-canvas")
    expect(canvas).to_have_attribute("data-rendered", "true", timeout=60000)
    _no_horizontal_overflow(page)
    cbox = canvas.bounding_box()
    assert cbox is not None and cbox["width"] <= 390 and cbox["height"] >= 300  # the images get the screen
    for name in ("Jump to lesion", "Sign report", "Sign out"):
        control = page.get_by_role("button", name=name)
        control.scroll_into_view_if_needed()
        b = control.bounding_box()
        assert b is not None and b["x"] >= 0 and b["x"] + b["width"] <= 390, name
        assert b["height"] >= 24, f"{name} is too small to tap ({b['height']} px)"  # WCAG 2.5.8 target size
    page.get_by_role("button", name="Jump to lesion").tap()
    expect(page.locator("#status")).to_contain_text("centroid of lesion 1")
    ctx.close()


def test_comparison_with_the_prior_is_side_by_side_and_synchronised(
    browser: Browser, live_server: LiveServer, analysed_study: Studies
) -> None:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    sign_in(page, live_server, "radiologist")
    page.goto(f"{live_server.url}/#/study/{analysed_study.current}")
    expect(page.locator("#viewer-canvas")).to_have_attribute("data-rendered", "true", timeout=60000)
    page.get_by_text("Crosshair and comparison").click()
    prior = page.get_by_label("Prior study")
    expect(prior.locator("option")).to_have_count(1)
    assert prior.locator("option").first.get_attribute("value") == analysed_study.prior
    page.get_by_role("button", name="Compare with prior").click()
    expect(page.get_by_role("button", name="Compare with prior")).to_have_attribute(
        "aria-pressed", "true", timeout=60000
    )
    prior_canvas = page.locator("#prior-canvas")
    expect(prior_canvas).to_be_visible()
    page.get_by_label("Layout").select_option("axial")
    page.wait_for_timeout(2000)
    before = prior_canvas.screenshot()
    # move only the current study's crosshair: the prior follows (a different axial slice is shown)
    for _ in range(12):
        page.get_by_role("button", name="Superior").click()
    page.wait_for_timeout(2500)
    after = prior_canvas.screenshot()
    assert before != after, "the prior view did not follow the current one"
    # and the two views sit side by side
    a, b = page.locator("#viewer-canvas").bounding_box(), prior_canvas.bounding_box()
    assert a is not None and b is not None and b["x"] >= a["x"] + a["width"] - 1 and abs(a["y"] - b["y"]) < 5
    ctx.close()


def test_a_refused_upload_shows_the_reason(browser: Browser, live_server: LiveServer) -> None:
    ctx = browser.new_context()
    page = ctx.new_page()
    sign_in(page, live_server, "technician")
    page.get_by_label("Study files (DICOM files or a zip)").set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"}]
    )
    page.get_by_role("button", name="Upload").click()
    message = page.locator(".upload-message")
    expect(message).to_contain_text("The upload was refused")
    expect(message).to_contain_text("no DICOM images found")
    ctx.close()


def test_each_role_sees_only_its_controls(browser: Browser, live_server: LiveServer, analysed_study: Studies) -> None:
    ctx = browser.new_context()
    page = ctx.new_page()
    sign_in(page, live_server, "neurologist")
    page.goto(f"{live_server.url}/#/study/{analysed_study.prior}")
    expect(page.locator("#viewer-canvas")).to_have_attribute("data-rendered", "true", timeout=60000)
    expect(page.locator(".report-box")).to_contain_text("not open to you yet")
    expect(page.get_by_role("button", name="Sign report")).to_have_count(0)
    expect(page.get_by_text("AI results are shown once the report is signed.")).to_be_visible()
    expect(page.get_by_text("AI overlays are shown once the report is signed.")).to_be_visible()
    expect(page.get_by_label("Overlay", exact=True)).to_have_count(0)  # and no overlay to switch on
    ctx.close()

    ctx = browser.new_context()
    page = ctx.new_page()
    sign_in(page, live_server, "technician")
    expect(page.get_by_role("heading", name="Upload a study")).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Open study"))).to_have_count(0)
    # the images of their own upload, to check their quality: no AI overlay, no lesions, no report
    page.get_by_role("link", name=re.compile("View the images of study")).first.click()
    expect(page.locator("#viewer-canvas")).to_have_attribute("data-rendered", "true", timeout=60000)
    expect(page.get_by_text("Acquired images only (quality check).")).to_be_visible()
    expect(page.get_by_label("Overlay", exact=True)).to_have_count(0)
    expect(page.locator(".report-box")).to_have_count(0)
    expect(page.get_by_role("button", name="Jump to lesion")).to_have_count(0)
    ctx.close()
