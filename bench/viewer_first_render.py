"""Web viewer: from opening a study page to the first rendered volume with its overlay, in Chromium.

Usage:  .venv/bin/python bench/viewer_first_render.py [--runs 5] [--profile iso1mm]

Starts the real service (uvicorn on loopback, SQLite, embedded worker, fresh data folder), uploads
a 4-sequence phantom study (``--profile iso1mm``: 1 mm isotropic), waits for its analysis, then opens
the study page ``--runs`` times in Debian's Chromium (headless, a fresh browser context each time, so
nothing is cached but the page's own scripts) and reads the page's performance marks:
``neuronav:study-open`` (the route starts) → ``neuronav:first-render`` (the frame after the
reference image and the segmentation overlay are on the GPU). Also printed: the same two images
fetched over HTTP alone (the server's part: authorisation, decryption, sending), and the WebGL
renderer (on a machine without a graphics card Chromium renders WebGL on the CPU, SwiftShader).
Target (issue 6): ≤ 2 s on loopback.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

PASSWORD = "quiet river stone lantern"
TARGET_S = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", default="iso1mm", choices=("iso1mm", "clinical"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import os

    import httpx
    import uvicorn
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="nn-viewer-bench-"))
    os.environ.update(
        NEURONAV_DATA_DIR=str(root / "data"),
        NEURONAV_ENV="development",
        NEURONAV_DATABASE_URL=f"sqlite:///{root / 'service.db'}",
        NEURONAV_MAX_UPLOAD_BYTES=str(500 * 1024 * 1024),
    )
    from neuronav.config import load_settings
    from neuronav.phantom import generate_study
    from neuronav.service import create_app
    from neuronav.workflow.operations import create_account

    settings = load_settings()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    for role in ("technician", "radiologist"):
        create_account(settings, f"{role}@bench.example", PASSWORD, role, display_name=role, active=True, licence="B-1")

    def token(role: str) -> str:
        r = httpx.post(f"{url}/api/auth/login", json={"email": f"{role}@bench.example", "password": PASSWORD})
        return str(r.json()["access_token"])

    generate_study(root / "study", seed=args.seed, lesion="glioma", fmt="dicom", profile=args.profile)
    archive = root / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted((root / "study" / "dicom").rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root / "study"))
    tech = {"Authorization": f"Bearer {token('technician')}"}
    with open(archive, "rb") as fh:
        up = httpx.post(
            f"{url}/api/studies", headers=tech, files=[("files", ("s.zip", fh, "application/zip"))], timeout=600
        )
    study = up.json()["study"]
    while True:
        state = httpx.get(f"{url}/api/analyses/{study['analysis']['id']}", headers=tech).json()["state"]
        if state in ("done", "failed"):
            break
        time.sleep(1)
    assert state == "done", state
    rad = {"Authorization": f"Bearer {token('radiologist')}"}
    manifest = httpx.get(f"{url}/api/studies/{study['id']}/viewer", headers=rad).json()
    t0 = time.perf_counter()
    sizes = [
        len(httpx.get(f"{url}/api/studies/{study['id']}/images/{name}", headers=rad, timeout=60).content)
        for name in ("reference", "segmentation")
    ]
    fetch_s = time.perf_counter() - t0

    times: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        renderer = ""
        for _ in range(args.runs):
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            page.goto(f"{url}/#/login")
            page.get_by_label("E-mail").fill("radiologist@bench.example")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("button", name="Sign out").wait_for()
            page.goto(f"{url}/#/study/{study['id']}")
            page.locator("#viewer-canvas[data-rendered='true']").wait_for(state="attached", timeout=120000)
            times.append(float(page.evaluate("window.__neuronav.firstRenderMs")) / 1000.0)
            renderer = renderer or str(
                page.evaluate(
                    "(() => { const gl = document.createElement('canvas').getContext('webgl2');"
                    " const i = gl.getExtension('WEBGL_debug_renderer_info');"
                    " return i ? gl.getParameter(i.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER) })()"
                )
            )
            ctx.close()
        browser.close()
    server.should_exit = True

    median = statistics.median(times)
    print(f"machine: {machine()}")
    print(f"WebGL renderer: {renderer}")
    print(f"study: phantom seed {args.seed}, profile {args.profile}, sequences {', '.join(manifest['sequences'])}")
    print(f"images: reference {sizes[0] / 1e6:.1f} MB + segmentation {sizes[1] / 1e6:.2f} MB (gzip NIfTI)")
    print(f"HTTP fetch of both images alone (server part): {fetch_s * 1000:.0f} ms")
    print(f"open → first render with overlay, {args.runs} runs: " + ", ".join(f"{t:.2f}" for t in times) + " s")
    print(f"median {median:.2f} s, max {max(times):.2f} s; target ≤ {TARGET_S:.1f} s → ratio {median / TARGET_S:.2f}")
    return 0 if median <= TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
