"""Smoke test of a running compose stack from the host (run by deploy/compose_test.sh).

    python deploy/compose_smoke.py --api http://127.0.0.1:18080 --dashboard http://127.0.0.1:18501 \
        --key-file KEY.json --access-count "podman exec convlens-test_api_1 ..."

API: classify and Grad-CAM saliency on a sample answer 200 with a map; a bad image, an unknown method
and an oversize body answer 4xx JSON naming the field; /ping without the token is refused.
Dashboard: headless Chromium (Playwright, Debian's chromium) opens the Attribution page, picks a sample
and waits for the maps; the api container's access log must show new saliency requests (the dashboard
image has no torch: a map on the page can only come from the api container).
Exit status 0 when every check passed; each check prints one line with its time.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "dashboard" / "samples" / "ring.png"
CHROMIUM = os.environ.get("CONVLENS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
failures: list[str] = []


def check(name: str, fn: Callable[[], str]) -> None:
    started = time.perf_counter()
    try:
        detail = fn()
        print(f"ok    {name:<48} {time.perf_counter() - started:6.2f} s  {detail}", flush=True)
    except Exception as exc:  # noqa: BLE001 — report every failed check, then fail
        failures.append(name)
        print(f"FAIL  {name:<48} {time.perf_counter() - started:6.2f} s  {exc.__class__.__name__}: {exc}",
              flush=True)


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def api_checks(api: str, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    image = base64.b64encode(SAMPLE.read_bytes()).decode("ascii")

    def post(endpoint: str, body: Any, **kw: Any) -> requests.Response:
        return requests.post(f"{api}/predictions/{endpoint}", json=body, headers=auth, timeout=120, **kw)

    def ping() -> str:
        r = requests.get(f"{api}/ping", headers=auth, timeout=10)
        expect(r.status_code == 200 and r.json().get("status") == "Healthy", f"{r.status_code} {r.text[:200]}")
        bare = requests.get(f"{api}/ping", timeout=10)
        expect(bare.status_code in (400, 401, 403), f"/ping without the token answered {bare.status_code}")
        return f"Healthy; without the token {bare.status_code}"

    def classify() -> str:
        r = post("classify", {"image": image, "model": "builtin"})
        expect(r.status_code == 200, f"{r.status_code} {r.text[:300]}")
        top = r.json()["topk"][0]
        expect(top["label"] == "ring", f"top-1 is {top}")
        return f"top-1 {top['label']} {top['probability']:.2f}"

    def saliency() -> str:
        r = post("saliency", {"image": image, "model": "builtin", "params": {"method": "gradcam"}})
        expect(r.status_code == 200, f"{r.status_code} {r.text[:300]}")
        body = r.json()
        png = base64.b64decode(body["images"]["map"])
        expect(png.startswith(b"\x89PNG"), "the map is not a PNG")
        return f"gradcam map {len(png)} B PNG, layer {body.get('layer')}, {body.get('elapsed_ms')} ms"

    def bad_image() -> str:
        r = post("saliency", {"image": base64.b64encode(b"not an image at all").decode(), "model": "builtin"})
        expect(400 <= r.status_code < 500, f"{r.status_code}")
        body = r.json()
        expect(body.get("field") == "image", f"field {body.get('field')!r}: {body}")
        return f"{r.status_code} field=image: {body['error'][:60]}"

    def bad_method() -> str:
        r = post("saliency", {"image": image, "params": {"method": "nope"}})
        expect(400 <= r.status_code < 500 and r.json().get("field") == "params.method", f"{r.status_code} {r.text}")
        return f"{r.status_code} field=params.method"

    def oversize() -> str:
        r = requests.post(f"{api}/predictions/classify", data=b"0" * (17 * 1024 * 1024), headers=auth, timeout=60)
        expect(r.status_code == 413, f"{r.status_code}")
        body = r.json()
        expect(body.get("field") == "body" and "16777216" in body.get("error", ""), f"{body}")
        return "413 JSON field=body"

    check("api /ping with and without the token", ping)
    check("api classify a ring", classify)
    check("api saliency (Grad-CAM)", saliency)
    check("api bad image -> 4xx JSON naming image", bad_image)
    check("api unknown method -> 4xx naming params.method", bad_method)
    check("api 17 MB body -> 413 JSON (the gate)", oversize)


def access_count(command: str) -> int:
    out = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)
    return sum(1 for line in out.stdout.splitlines() if "/predictions/saliency" in line)


def dashboard_checks(dashboard: str, count_command: str, screenshot: Path | None) -> None:
    from playwright.sync_api import sync_playwright

    def health() -> str:
        r = requests.get(f"{dashboard}/_stcore/health", timeout=10)
        expect(r.status_code == 200, f"{r.status_code}")
        return "ok"

    def browser() -> str:
        before = access_count(count_command)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = b.new_page(viewport={"width": 1400, "height": 1100})
                page.goto(dashboard, wait_until="domcontentloaded")
                page.get_by_text("API: connected").wait_for(timeout=90_000)
                page.locator('[data-testid="stSelectbox"]').filter(has_text="Sample").click()
                page.get_by_role("option", name="ring").click()
                page.get_by_text("Why “ring”?").wait_for(timeout=180_000)
                images = page.locator('[data-testid="stImage"] img:visible')
                images.nth(4).wait_for(timeout=120_000)
                # The four technique maps (Streamlit re-renders while the answers arrive: poll). The input
                # preview is not counted: on a dashboard's very first session it sometimes stays unloaded in
                # the container (a Streamlit media-cache race, under investigation); it is not an API result.
                loaded, deadline = 0, time.monotonic() + 60
                while time.monotonic() < deadline:
                    loaded = images.evaluate_all("els => els.filter(e => e.complete && e.naturalWidth > 0).length")
                    if loaded >= 5:
                        break
                    page.wait_for_timeout(500)
                visible = images.count()
                expect(loaded >= 4, f"{loaded} of {visible} images rendered")
                errors = page.locator('[data-testid="stAlert"]').filter(has_text="could not").count()
                expect(errors == 0, f"{errors} error boxes on the page")
                if screenshot is not None:
                    page.wait_for_timeout(500)
                    page.screenshot(path=str(screenshot), full_page=True)
            finally:
                b.close()
        after = access_count(count_command)
        expect(after > before, f"the api container's access log shows no new saliency request ({before} -> {after})")
        return (f"{loaded} of {visible} visible images loaded; "
                f"api access log saliency requests {before} -> {after}")

    check("dashboard /_stcore/health", health)
    check("dashboard in Chromium shows maps from the api", browser)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", required=True)
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--access-count", required=True, help="command printing the api's access log")
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args(argv)
    token = json.loads(args.key_file.read_text())["inference"]["key"]
    api_checks(args.api.rstrip("/"), token)
    dashboard_checks(args.dashboard.rstrip("/"), args.access_count, args.screenshot)
    print(f"{len(failures)} failed: {', '.join(failures)}" if failures else "all checks passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
