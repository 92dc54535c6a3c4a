"""Leaving a page ends it (web/src/router.js): its polling stops, its requests' late answers paint
nothing on the next page, and its viewer lets go of its WebGL context and its window listeners."""

from __future__ import annotations

import contextlib
import json
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, CDPSession, Error, Page, Route, expect

from tests.web.conftest import LiveServer, Studies, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

# a worklist with a study being analysed: the worklist page polls while it shows one
RUNNING = {
    "items": [
        {
            "id": "running-study",
            "state": "running",
            "flagged": False,
            "patient_pseudonym": "PSN-RUNNING",
            "study_date": "20240102",
            "description": "MR brain",
            "sequences": ["T1", "T2"],
            "report_status": None,
            "uploaded_at": "2024-01-02T10:00:00Z",
            "analysis": {"id": "a1", "state": "running", "progress": 0.4, "stage": "segmentation"},
        }
    ],
    "total": 1,
    "offset": 0,
    "limit": 25,
}


def go(page: Page, hash_: str) -> None:
    """Navigate inside the app as a link does (a hash change, no reload)."""
    page.evaluate("h => { location.hash = h }", hash_)


def window_listeners(cdp: CDPSession, kind: str) -> int:
    window = cdp.send("Runtime.evaluate", {"expression": "window"})["result"]["objectId"]
    listeners = cdp.send("DOMDebugger.getEventListeners", {"objectId": window})["listeners"]
    return sum(1 for x in listeners if x["type"] == kind)


def test_leaving_a_page_stops_its_polling_and_releases_its_viewer(
    browser: Browser, live_server: LiveServer, analysed_study: Studies
) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    cdp = ctx.new_cdp_session(page)
    polls: list[str] = []

    def worklist(route: Route) -> None:
        polls.append(route.request.url)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(RUNNING))

    page.route(lambda url: urlparse(url).path == "/api/studies", worklist)
    sign_in(page, live_server, "radiologist")
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
    page.wait_for_timeout(4500)
    assert len(polls) >= 2, f"the worklist did not poll while a study is analysed: {polls}"
    resize_before = window_listeners(cdp, "resize")

    go(page, f"#/study/{analysed_study.current}")
    canvas = page.locator("#viewer-canvas")
    expect(canvas).to_have_attribute("data-rendered", "true", timeout=60000)
    polled = len(polls)
    assert window_listeners(cdp, "resize") > resize_before, "the probe sees no listener of the viewer"
    page.evaluate("() => { window.__leftCanvas = document.querySelector('#viewer-canvas') }")
    page.wait_for_timeout(4500)  # two polling periods
    assert len(polls) == polled, "the worklist went on polling after it was left"

    go(page, "#/login-is-not-here")  # a page that starts nothing: only the study page's leftovers count
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    assert page.evaluate("() => window.__leftCanvas.getContext('webgl2').isContextLost()"), (
        "the viewer's WebGL context outlived its page"
    )
    assert page.locator("canvas").count() == 0
    assert window_listeners(cdp, "resize") == resize_before, "the viewer's window listeners outlived its page"
    ctx.close()


def test_a_late_answer_paints_nothing_on_the_next_page(
    browser: Browser, live_server: LiveServer, analysed_study: Studies
) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    held: list[Route] = []
    manifest = f"/api/studies/{analysed_study.current}/viewer"

    def hold(route: Route) -> None:  # answered only when released below
        held.append(route)

    page.route(lambda url: urlparse(url).path == manifest, hold)
    sign_in(page, live_server, "radiologist")
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()

    go(page, f"#/study/{analysed_study.current}")
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the study page did not ask for its viewer manifest"
    go(page, "#/worklist")
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
    expect(page.locator("table.worklist")).to_be_visible()
    for route in held:
        with contextlib.suppress(Error):  # the request was aborted with its page
            route.continue_()
    page.wait_for_timeout(3000)
    assert page.locator("main h1").all_inner_texts() == ["Worklist"]
    assert page.locator("main canvas, main .study-layout, main .meta").count() == 0, "the study painted on the worklist"
    assert page.title() == "Worklist — NeuroNav"
    ctx.close()
