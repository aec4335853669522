"""Peak and retained memory of requests of 5000×5000 images (16 in one codes request; 8 RGBA on classify).

    .venv/bin/python bench/decode_memory.py            # every case, each in a fresh process (~1 min)
    .venv/bin/python bench/decode_memory.py --case png --path new --limit 500

A case runs the codes handler the way a TorchServe worker does (``handle`` on a request row) after one small
warm-up request, and reports the worker's peak RSS increase during the request (``ru_maxrss``, which only
grows, so every case gets its own process), the RSS right after it, and the body size. ``--path old``
decodes the way the handler did before images were reduced at decode (every image at full size, held until
the batch is answered, memory never handed back); ``--limit`` raises the per-request and per-worker pixel
limits (megapixels) so the decode itself is measured rather than refused.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIDE, COUNT = 5000, 16


def picture(fmt: str, k: int, mode: str = "RGB") -> bytes:
    """A 5000×5000 picture that compresses well (a few shapes), as the issue's 66 KB request did."""
    img = Image.new(mode, (SIDE, SIDE), (20 + 10 * k, 90, 160, 255)[:len(mode)])
    ImageDraw.Draw(img).ellipse((800, 900, 4200, 4100), fill=(230, 200, 40, 128)[:len(mode)])
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **({"quality": 85} if fmt == "JPEG" else {"optimize": True}))
    return buffer.getvalue()


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def old_decode(images: Any, short_side: int, budget: Any, limit: int) -> tuple[dict[str, Any], int]:
    """The decode before this change: every image at full size, nothing reserved."""
    from convlens.images import decode_image

    return {name: [decode_image(item) for item in data] if isinstance(data, list) else decode_image(data)
            for name, data in images.items()}, 0


# case -> (endpoint, format, mode, requests in the batch, images per request)
CASES = {"png": ("codes", "PNG", "RGB", 1, COUNT), "jpeg": ("codes", "JPEG", "RGB", 1, COUNT),
         "rgba8": ("classify", "PNG", "RGBA", 8, 1)}


def rows_file(case: str) -> Path:
    """The batch's request bodies, written once by the parent: making the pictures would raise a child's peak."""
    endpoint, fmt, mode, requests, count = CASES[case]
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"convlens-decode-memory-{case}.json"
    if not path.is_file():
        pictures = [base64.b64encode(picture(fmt, k, mode)).decode() for k in range(max(requests, count))]
        bodies = [{"images": pictures[:count]}] if endpoint == "codes" else [{"image": p} for p in pictures]
        path.write_text(json.dumps(bodies))
    return path


def handler_for(endpoint: str, batch: int) -> tuple[Any, Any]:
    from ts.context import Context

    from handlers.corpus import CorpusHandler
    from handlers.prediction import PredictionHandler as ClassifyHandler

    handler = CorpusHandler() if endpoint == "codes" else ClassifyHandler()
    context = Context(endpoint, "/nonexistent", {"model": {"modelName": endpoint}}, batch, None, "0.12.0",
                      model_yaml_config={"handler": {"preload": []}})
    handler.initialize(context)
    return handler, context


def run_case(case: str, path: str, limit: float | None) -> dict[str, Any]:
    if limit is not None:
        os.environ["CONVLENS_REQUEST_MAX_MPX"] = os.environ["CONVLENS_WORKER_PIXEL_BUDGET_MPX"] = str(limit)
    from ts.context import RequestProcessor

    from handlers import pixel_budget, request_images

    if path == "old":
        request_images.decode_inputs = old_decode  # type: ignore[assignment]
        pixel_budget.return_memory_to_os = lambda: False
    endpoint, _, _, requests, _ = CASES[case]
    handler, context = handler_for(endpoint, requests)

    def send(bodies: list[dict[str, Any]]) -> list[int]:
        context.request_ids = {i: f"r{i}" for i in range(len(bodies))}
        context.request_processor = [RequestProcessor({}) for _ in bodies]
        handler.handle([{"body": body} for body in bodies], context)
        return [int(context.get_response_status(i)[0]) for i in range(len(bodies))]

    small = base64.b64encode(_small()).decode()
    send([{"images": [small]} if endpoint == "codes" else {"image": small}])  # warm-up: model loaded, paths run
    text = rows_file(case).read_text()
    bodies = json.loads(text)
    before, peak_before = rss_mb(), peak_mb()
    statuses = send(bodies)
    return {"case": case, "path": path, "limit_mpx": limit, "statuses": statuses, "body_kb": round(len(text) / 1024),
            "rss_before_mb": round(before), "peak_increase_mb": round(max(0.0, peak_mb() - max(before, peak_before))),
            "rss_after_mb": round(rss_mb()), "retained_mb": round(rss_mb() - before)}


def _small() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=tuple(CASES))
    parser.add_argument("--path", choices=("old", "new"), default="new")
    parser.add_argument("--limit", type=float, default=None, help="pixel limits in megapixels (default: the server's)")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.path, args.limit)))
        return 0
    runs = [("png", "old", None), ("png", "new", None), ("png", "new", 500.0), ("jpeg", "old", None),
            ("jpeg", "new", None), ("rgba8", "old", None), ("rgba8", "new", None)]
    for case in CASES:
        rows_file(case)
    for case, path, limit in runs:
        command = [sys.executable, __file__, "--case", case, "--path", path]
        if limit is not None:
            command += ["--limit", str(limit)]
        out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
        print(out.stdout.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
