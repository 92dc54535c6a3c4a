"""Every role, every page: each role signs in through the sign-in page and visits every page and action
it has, as a new user would, and the walk fails on any error banner, any 4xx/5xx answer the step did
not expect, any console error or uncaught exception in the page.

Written against the defects a first user met (issue 16): the administrator's Users section asked
``/api/users/...`` (404 "Not Found"), the neurologist's worklist asked for ``study:status`` (403), the
second-factor field was shown to every user. Each would fail this walk (an unexpected 4xx and an
error banner; a visible code field before the server asked for it).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Response, expect

from neuronav.security import totp
from tests.web.conftest import PASSWORD, LiveServer, Studies

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]
RESOURCE_ERROR = "Failed to load resource: the server responded with a status of"


@dataclass
class Watch:
    """What went wrong in a page: console errors, uncaught exceptions, answers >= 400 not expected."""

    page: Page
    problems: list[str] = field(default_factory=list)
    expected: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path regex, status)

    def expect_status(self, method: str, path: str, status: int) -> None:
        """The next answer of ``method`` on a path matching ``path`` may be ``status`` (once)."""
        self.expected.append((method, path, status))

    def on_response(self, response: Response) -> None:
        if response.status < 400:
            return
        method, path = response.request.method, urlparse(response.url).path
        for i, (m, p, s) in enumerate(self.expected):
            if m == method and re.fullmatch(p, path) and s == response.status:
                del self.expected[i]
                return
        self.problems.append(f"{method} {path} answered {response.status}")

    def on_console(self, message: ConsoleMessage) -> None:
        # Chromium logs every answer >= 400 as a console error too; on_response judges those (expected
        # or not), so only the other console errors count here
        if message.type == "error" and not message.text.startswith(RESOURCE_ERROR):
            self.problems.append(f"console error: {message.text}")

    def check(self, where: str) -> None:
        """No error banner on the page, nothing unexpected so far."""
        banners = self.page.locator(
            "main .error:visible, main [role=alert].error:visible, #status[data-kind=error]:visible"
        )
        texts = banners.all_inner_texts()
        assert not texts, f"{where}: error banner(s): {texts}"
        assert not self.problems, f"{where}: {self.problems}"


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    yield ctx
    ctx.close()


def watched(context: BrowserContext) -> Watch:
    page = context.new_page()
    watch = Watch(page)
    page.on("response", watch.on_response)
    page.on("console", watch.on_console)
    page.on("pageerror", lambda exc: watch.problems.append(f"uncaught: {exc}"))
    return watch


def sign_in_as(watch: Watch, server: LiveServer, role: str) -> None:
    """Through the sign-in page; the code field appears only when the server asks for it."""
    page, account = watch.page, server.accounts[role]
    page.goto(f"{server.url}/#/login")
    code = page.get_by_label("Authentication code (6 digits)")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(code).to_be_hidden()
    page.get_by_label("E-mail").fill(account.email)
    page.get_by_label("Password", exact=True).fill(account.password)
    if account.totp_secret:
        watch.expect_status("POST", "/api/auth/login", 401)  # the server asks for the second factor
    page.get_by_role("button", name="Sign in").click()
    if account.totp_secret:
        expect(code).to_be_visible()
        code.fill(totp.code_at(account.totp_secret, totp.current_step()))
        page.get_by_role("button", name="Sign in").click()
    else:
        page.wait_for_timeout(300)
        expect(code).to_be_hidden()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible(timeout=20000)
    watch.check(f"{role}: sign-in")


def open_study(watch: Watch, study_id: str, link: str) -> None:
    page = watch.page
    page.get_by_role("link", name="Worklist").click()
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
    row = page.locator(f"tr[data-study-id='{study_id}']")
    expect(row).to_be_visible(timeout=20000)
    row.get_by_role("link", name=re.compile(link)).click()
    expect(page.locator("#viewer-canvas")).to_have_attribute("data-rendered", "true", timeout=60000)
    page.wait_for_timeout(1000)  # late requests (annotations, report) land before the check


def test_technician_pages(context: BrowserContext, live_server: LiveServer, analysed_study: Studies) -> None:
    watch = watched(context)
    page = watch.page
    sign_in_as(watch, live_server, "technician")
    expect(page.get_by_role("heading", name="Upload a study")).to_be_visible()
    expect(page.locator("tr[data-study-id]").first).to_be_visible()
    watch.check("technician: worklist")
    # the images of an own upload, to check their quality: no AI overlay, no report
    open_study(watch, analysed_study.current, "View the images")
    expect(page.get_by_label("Overlay", exact=True)).to_have_count(0)
    expect(page.locator(".report-box")).to_have_count(0)
    expect(page.get_by_role("heading", name="Lesions")).to_have_count(0)
    watch.check("technician: study images")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    watch.check("technician: sign-out")


def test_radiologist_pages(context: BrowserContext, live_server: LiveServer, analysed_study: Studies) -> None:
    watch = watched(context)
    page = watch.page
    sign_in_as(watch, live_server, "radiologist")
    expect(page.locator("tr[data-study-id]").first).to_be_visible()
    page.get_by_label("Status").select_option("done")
    expect(page.locator("tr[data-study-id]").first).to_be_visible()
    expect(page.get_by_role("columnheader", name="Order")).to_be_visible()  # the HL7 order a study answers
    watch.check("radiologist: worklist")
    open_study(watch, analysed_study.prior, "Open study")
    expect(page.locator(".report-status")).to_be_visible()
    expect(page.get_by_label("Overlay", exact=True)).to_be_visible()
    watch.check("radiologist: study")
    page.get_by_role("link", name="Open the full report").click()
    expect(page.get_by_role("heading", name=re.compile("^Report NN-"))).to_be_visible()
    expect(page.locator(".report-status")).to_be_visible()
    # where the outputs went (the outbox): nothing configured in this service, said so plainly
    expect(page.locator(".deliveries")).to_contain_text("Not sent to any hospital system.")
    expect(page.locator(".report-box")).not_to_contain_text("null")  # no missing value printed as "null"
    page.wait_for_timeout(500)
    watch.check("radiologist: report")


def test_neurologist_pages(context: BrowserContext, live_server: LiveServer, analysed_study: Studies) -> None:
    watch = watched(context)
    page = watch.page
    sign_in_as(watch, live_server, "neurologist")
    # the worklist lists what a neurologist may see (study:list), with no refusal on the page
    expect(page.locator(f"tr[data-study-id='{analysed_study.prior}']")).to_be_visible(timeout=20000)
    watch.check("neurologist: worklist")
    open_study(watch, analysed_study.prior, "Open study")
    expect(page.locator(".report-box")).to_be_visible()
    watch.check("neurologist: study")


def test_admin_pages(context: BrowserContext, live_server: LiveServer) -> None:
    # someone who registered and waits for verification
    tag = uuid.uuid4().hex[:8]
    name = f"Dr Pending {tag}"
    r = httpx.post(
        f"{live_server.url}/api/auth/register",
        json={
            "email": f"pending-{tag}@hospital.example",
            "password": PASSWORD,
            "display_name": name,
            "role": "radiologist",
        },
        timeout=30,
    )
    assert r.status_code in (201, 202), r.text
    watch = watched(context)
    page = watch.page
    sign_in_as(watch, live_server, "admin")
    expect(page.get_by_role("heading", name="Administration")).to_be_visible()
    users = page.locator("section[aria-labelledby='users-h']")
    expect(users.locator("tbody tr").first).to_be_visible(timeout=20000)
    watch.check("admin: users")

    def row() -> object:
        return users.locator("tr", has_text=name)

    # verify with licence and role
    users.get_by_label("State").select_option("")
    users.get_by_label("Name or e-mail").fill(tag)
    with page.expect_response(lambda r: "/api/admin/users?" in r.url and tag in r.url):
        users.get_by_role("button", name="Apply").click()
    expect(row()).to_contain_text("pending")  # type: ignore[arg-type]
    users.get_by_label(f"Licence number of {name}").fill(f"GMC-{tag}")
    users.get_by_label(f"Role of {name}").select_option("neurologist")
    users.get_by_role("button", name="Verify").click()
    expect(page.locator("#status")).to_contain_text(f"{name} verified.")
    expect(row()).to_contain_text("active")  # type: ignore[arg-type]
    expect(row()).to_contain_text("neurologist")  # type: ignore[arg-type]
    watch.check("admin: verify")
    # role change
    users.get_by_label(f"Role of {name}").select_option("radiologist")
    expect(page.locator("#status")).to_contain_text("Role changed to radiologist.")
    watch.check("admin: role change")
    # disable (with a reason), enable
    page.once("dialog", lambda d: d.accept("left the hospital"))
    users.locator("tr", has_text=name).get_by_role("button", name="Disable").click()
    expect(row()).to_contain_text("disabled")  # type: ignore[arg-type]
    users.locator("tr", has_text=name).get_by_role("button", name="Enable").click()
    expect(row()).to_contain_text("active")  # type: ignore[arg-type]
    watch.check("admin: disable, enable")
    # password reset: the one-time password shown once
    page.once("dialog", lambda d: d.accept())
    users.get_by_role("button", name=f"Reset password of {name}").click()
    expect(users.locator(".notice")).to_contain_text(f"One-time password for {name}")
    watch.check("admin: password reset")

    # hospital connections: a DICOM node and an HL7 destination added and removed through the page
    nodes = page.locator("section[aria-labelledby='nodes-h']")
    nodes.get_by_label("Node name").fill(f"pacs-{tag}")
    nodes.get_by_label("AE title").fill("ORTHANC")
    nodes.get_by_label("Host").fill("127.0.0.1")
    nodes.get_by_label("Port").fill("4242")
    nodes.get_by_label("May send studies to NeuroNav").check()
    nodes.get_by_label("seg").check()
    nodes.get_by_role("button", name="Add node").click()
    expect(page.locator("#status")).to_contain_text(f"DICOM node pacs-{tag} added.")
    expect(nodes.locator("tr", has_text=f"pacs-{tag}")).to_contain_text("127.0.0.1:4242")
    destinations = page.locator("section[aria-labelledby='destinations-h']")
    destinations.get_by_label("Destination name").fill(f"ris-{tag}")
    destinations.get_by_label("MLLP host").fill("127.0.0.1")
    destinations.get_by_label("MLLP port").fill("2575")
    destinations.get_by_role("button", name="Add destination").click()
    expect(page.locator("#status")).to_contain_text(f"Destination ris-{tag} added.")
    expect(destinations.locator("tr", has_text=f"ris-{tag}")).to_contain_text("hl7")
    page.once("dialog", lambda d: d.accept())
    nodes.get_by_role("button", name=f"Remove node pacs-{tag}").click()
    expect(nodes.locator("tr", has_text=f"pacs-{tag}")).to_have_count(0)
    expect(page.locator("section[aria-labelledby='deliveries-h']")).to_contain_text("Nothing has been delivered yet.")
    watch.check("admin: hospital connections")

    # the audit log names people, not ids
    audit = page.locator("section[aria-labelledby='audit-h']")
    audit.get_by_label("Action").fill("user.*")
    audit.get_by_role("button", name="Apply").click()
    first = audit.locator("tbody tr").first
    expect(first).to_be_visible()
    expect(first.locator("td[data-label='Who']")).to_contain_text("Admin One (admin)")
    expect(first.locator("td[data-label='Target']")).to_contain_text(name)
    audit.get_by_role("button", name="Verify the hash chain").click()
    expect(audit.get_by_text(re.compile("^Intact"))).to_be_visible()
    watch.check("admin: audit log")
    # an administrator has no worklist: the start page is the administration, with no refusal
    page.goto(f"{live_server.url}/#/worklist")
    expect(page.get_by_role("heading", name="Administration")).to_be_visible()
    expect(page.get_by_role("link", name="Worklist")).to_have_count(0)
    page.wait_for_timeout(500)
    watch.check("admin: worklist link")
