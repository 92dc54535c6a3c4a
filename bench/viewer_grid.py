"""Web viewer, the 2×2 hanging protocol: open a study → four linked sequences rendered, and the slice
step latency with four views, in Chromium.

Usage:  .venv/bin/python bench/viewer_grid.py [--runs 5] [--steps 20] [--profile clinical] [--keep DIR]

Starts the real service (uvicorn on loopback, SQLite, embedded worker), uploads a 4-sequence phantom
study, waits for its analysis (``--keep DIR`` keeps the service's data in DIR and reuses a study
analysed there before), then opens the study page ``--runs`` times in Debian's Chromium (headless, a
fresh browser context each time: nothing cached but the page's own scripts) and reads:

- open → grid: the page's performance measure from ``neuronav:study-open`` (the route starts) to
  ``neuronav:grid-rendered`` (the frame after all four panes, T1 · T1c · T2 · FLAIR, each with the
  segmentation overlay, are on the GPU and linked);
- slice step: ArrowUp pressed ``--steps`` times on the viewer (a keydown dispatched in the page), each
  timed from the key to the end of the frame in which all four canvases have drawn the new slice (a
  pixel read back from every canvas's WebGL context waits for its drawing to finish); each step is
  checked to have moved all four panes' slice readouts.

Also printed: the images of the grid fetched over HTTP alone (the server's part: authorisation,
decryption, sending) and the WebGL renderer. Targets (issue 16): open → grid ≤ 2 s (goal 1 s), slice
step ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
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
TARGET_OPEN_S = 2.0
TARGET_STEP_MS = 100.0

# in the page: ArrowUp n times; per step the ms until every pane has drawn, and the panes' slice readouts
STEP_JS = """
async (n) => {
  const stage = document.querySelector('.stage')
  const canvases = [...stage.querySelectorAll('canvas')].filter((c) => c.offsetParent)
  const readouts = () => [...stage.querySelectorAll('.pane:not([hidden]) .corner.bl')].map((e) => e.textContent)
  const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)))
  await frame()
  const out = []
  for (let i = 0; i < n; i++) {
    const before = readouts()
    const t0 = performance.now()
    stage.dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowUp', bubbles: true, cancelable: true }))
    await frame()
    for (const c of canvases) {
      const gl = c.getContext('webgl2')
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4))
    }
    const ms = performance.now() - t0
    const after = readouts()
    out.push({ ms, moved: after.filter((t, j) => t !== before[j]).length, panes: after.length })
  }
  return { steps: out, canvases: canvases.length }
}
"""


def _analysed_study(url: str, root: Path, profile: str, seed: int, token: object) -> str:
    import httpx

    from neuronav.phantom import generate_study

    marker = root / "study.json"
    if marker.is_file():
        return str(json.loads(marker.read_text())["id"])
    generate_study(root / "study", seed=seed, lesion="glioma", fmt="dicom", profile=profile)
    archive = root / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted((root / "study" / "dicom").rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root / "study"))
    tech = {"Authorization": f"Bearer {token('technician')}"}  # type: ignore[operator]
    with open(archive, "rb") as fh:
        up = httpx.post(
            f"{url}/api/studies", headers=tech, files=[("files", ("s.zip", fh, "application/zip"))], timeout=600
        )
    assert up.status_code == 201, up.text
    study = up.json()["study"]
    while True:
        state = httpx.get(f"{url}/api/analyses/{study['analysis']['id']}", headers=tech).json()["state"]
        if state in ("done", "failed"):
            break
        time.sleep(1)
    assert state == "done", state
    marker.write_text(json.dumps({"id": study["id"]}))
    return str(study["id"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--profile", default="clinical", choices=("iso1mm", "clinical"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="keep the service's data here, reuse a study analysed before")
    parser.add_argument("--headed", action="store_true")
    args = parser.parse_args()

    import httpx
    import uvicorn
    from playwright.sync_api import sync_playwright

    root = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="nn-grid-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    fresh = not (root / "service.db").exists()
    os.environ.update(
        NEURONAV_DATA_DIR=str(root / "data"),
        NEURONAV_ENV="development",
        NEURONAV_DATABASE_URL=f"sqlite:///{root / 'service.db'}",
        NEURONAV_MAX_UPLOAD_BYTES=str(500 * 1024 * 1024),
    )
    from neuronav.config import load_settings
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
    if fresh:
        for role in ("technician", "radiologist"):
            create_account(
                settings, f"{role}@bench.example", PASSWORD, role, display_name=role, active=True, licence="B-1"
            )

    def token(role: str) -> str:
        r = httpx.post(f"{url}/api/auth/login", json={"email": f"{role}@bench.example", "password": PASSWORD})
        return str(r.json()["access_token"])

    study_id = _analysed_study(url, root, args.profile, args.seed, token)
    rad = {"Authorization": f"Bearer {token('radiologist')}"}
    manifest = httpx.get(f"{url}/api/studies/{study_id}/viewer", headers=rad).json()
    grid_images = ["segmentation", *(f"sequence-{q}" for q in ("T1", "T1c", "T2", "FLAIR"))]
    sizes: dict[str, int] = {}
    t0 = time.perf_counter()
    for name in grid_images:
        r = httpx.get(f"{url}/api/studies/{study_id}/images/{name}", headers=rad, timeout=60)
        assert r.status_code == 200, (name, r.status_code, r.text[:200])
        sizes[name] = len(r.content)
    fetch_s = time.perf_counter() - t0

    opens: list[float] = []
    steps: list[float] = []
    unlinked = 0
    renderer = ""
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=not args.headed, args=["--no-sandbox"]
        )
        for run in range(args.runs):
            ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
            page = ctx.new_page()
            page.goto(f"{url}/#/login")
            page.get_by_label("E-mail").fill("radiologist@bench.example")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("button", name="Sign out").wait_for()
            page.goto(f"{url}/#/study/{study_id}")
            page.locator(".stage[data-grid-ready='true']").wait_for(state="attached", timeout=300000)
            opens.append(float(page.evaluate("window.__neuronav.gridMs")) / 1000.0)
            if run == 0:
                detail = page.evaluate(
                    "performance.getEntriesByType('mark').filter(m => m.name.startsWith('neuronav:'))"
                    ".map(m => [m.name, Math.round(m.startTime)])"
                )
                print("page marks (ms since navigation):", ", ".join(f"{n[9:]} {t}" for n, t in detail))
            result = page.evaluate(STEP_JS, args.steps)
            assert result["canvases"] == 4, result
            for s in result["steps"][1:]:  # the first step after loading warms the shaders' paths
                steps.append(float(s["ms"]))
                unlinked += s["moved"] != s["panes"]
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

    med_open = statistics.median(opens)
    steps.sort()
    med_step = statistics.median(steps)
    p95 = steps[min(len(steps) - 1, int(0.95 * len(steps)))]
    load = os.getloadavg()[0]
    print(f"machine: {machine()}, load average {load:.1f}")
    print(f"WebGL renderer: {renderer}")
    print(f"study: phantom seed {args.seed}, profile {args.profile}, sequences {', '.join(manifest['sequences'])}")
    print("images of the grid: " + ", ".join(f"{n} {b / 1e6:.2f} MB" for n, b in sizes.items()))
    print(f"HTTP fetch of those {len(sizes)} images alone, one after another (server part): {fetch_s * 1000:.0f} ms")
    print(f"open → four linked sequences rendered, {args.runs} runs: " + ", ".join(f"{t:.2f}" for t in opens) + " s")
    print(
        f"  median {med_open:.2f} s, max {max(opens):.2f} s; target ≤ {TARGET_OPEN_S:.1f} s → ratio "
        f"{med_open / TARGET_OPEN_S:.2f}"
    )
    print(
        f"slice step, four views ({len(steps)} steps): median {med_step:.0f} ms, p95 {p95:.0f} ms, "
        f"max {steps[-1]:.0f} ms; target ≤ {TARGET_STEP_MS:.0f} ms → ratio {med_step / TARGET_STEP_MS:.2f}"
    )
    print(f"steps that did not move all four panes: {unlinked}")
    return 0 if med_open <= TARGET_OPEN_S and med_step <= TARGET_STEP_MS and not unlinked else 1


if __name__ == "__main__":
    raise SystemExit(main())
