"""Render a self-contained ``report.html`` to a PNG with headless Chromium, the way a browser shows it.

    python scripts/render_report.py runs/traffic/report.html report.png [--width 1280] [--height 4000]

Chromium runs without network, GPU or sandbox (``--no-sandbox`` is needed as root in containers)
and with a fresh profile in a temporary folder; the page must need nothing but itself. Debian:
``apt-get install -y chromium``. Exits non-zero, with Chromium's output, if no PNG was written.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(f"no headless browser found (looked for {', '.join(BROWSERS)}); "
                     "on Debian: apt-get install -y chromium")


def render(html: Path, png: Path, width: int = 1280, height: int = 4000, timeout: float = 120.0) -> Path:
    """Screenshot ``html`` into ``png`` (``width`` x ``height`` pixels); returns ``png``."""
    html, png = Path(html).resolve(), Path(png).resolve()
    if not html.is_file():
        raise SystemExit(f"{html}: no such file")
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="render-report-") as profile:
        cmd = [find_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-extensions", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--window-size={width},{height}", f"--screenshot={png}", html.as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not png.is_file() or not png.read_bytes().startswith(PNG_SIGNATURE):
        raise SystemExit(f"chromium wrote no PNG (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return png


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html", type=Path, help="report.html to render")
    p.add_argument("png", type=Path, help="screenshot to write")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=4000)
    args = p.parse_args(argv)
    out = render(args.html, args.png, args.width, args.height)
    print(f"{args.html} -> {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
