"""One self-contained HTML page of a traffic report: ``report.html``, opened in any browser offline.

``write_html`` renders the Markdown report that ``spikeport traffic`` writes (``report.md``) into
HTML, with every plot embedded as a base64 PNG data URI, the tables as HTML tables and the whole
``summary.json`` at the end (collapsed). The page references nothing outside itself: no
stylesheet, script, font or image file, and no link; text that looks like a URL stays text.

The Markdown is the subset ``spikeport.traffic._report`` writes: headings (``#`` to ``####``),
pipe tables (``\\|`` inside a cell), ``- `` lists, ``![alt](file.png)`` images on their own line,
inline ``code`` and paragraphs. An image must be a PNG file in the report's folder; anything else
is a ``ValueError`` naming it.
"""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)$")
_STYLE = """
body { font-family: sans-serif; max-width: 70em; margin: 1em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #eee; }
code, pre { background: #f4f4f4; font-family: monospace; }
pre { padding: 0.5em; overflow-x: auto; font-size: 0.8em; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
"""


def _inline(text: str) -> str:
    """Escape ``text`` and turn ``code`` spans into <code>."""
    parts = text.split("`")
    out = []
    for i, part in enumerate(parts):
        esc = html.escape(part, quote=False)
        out.append(f"<code>{esc}</code>" if i % 2 and i < len(parts) - 1 else (esc if i % 2 == 0 else "`" + esc))
    return "".join(out)


def _cells(line: str) -> list:
    """The cells of a pipe-table row; ``\\|`` is a literal bar."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def _image(alt: str, src: str, folder: Path) -> str:
    """A <figure> with the PNG ``src`` (a file in ``folder``) as a data URI."""
    path = folder / src
    if "/" in src or "\\" in src or src.startswith(".") or ":" in src:
        raise ValueError(f"report image {src!r} must be a file name in the report folder")
    if not path.is_file():
        raise ValueError(f"report image {src!r} not found in {folder}")
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"report image {src!r} is not a PNG file")
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="{uri}" alt="{html.escape(alt)}"><figcaption>{html.escape(alt)}</figcaption>'
            "</figure>")


def markdown_to_html(markdown: str, folder) -> str:
    """The HTML body of ``markdown`` (the subset in the module docstring), images read from ``folder``."""
    folder = Path(folder)
    lines = markdown.splitlines()
    out, i = [], 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
            continue
        heading = re.match(r"^(#{1,4}) (.*)$", line)
        image = _IMAGE.match(line.strip())
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            i += 1
        elif image:
            out.append(_image(image["alt"], image["src"], folder))
            i += 1
        elif line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            header, body = rows[0], rows[1:]
            if body and all(re.fullmatch(r":?-+:?", c) for c in body[0]):
                body = body[1:]
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in header) + "</tr></thead>"
                       "<tbody>" + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                                          for row in body) + "</tbody></table>")
        elif line.lstrip().startswith("- "):
            items = []
            while i < len(lines) and lines[i].lstrip().startswith("- "):
                items.append(lines[i].lstrip()[2:])
                i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(t)}</li>" for t in items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#{1,4} |\||- |!\[)", lines[i].lstrip()):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


def render_page(markdown: str, folder, summary: dict | None = None) -> str:
    """A whole HTML document: the report's body and, collapsed, ``summary`` as JSON."""
    first = next((ln for ln in markdown.splitlines() if ln.startswith("# ")), "# spikeport report")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(first[2:])}</title>", f"<style>{_STYLE}</style></head><body>",
             markdown_to_html(markdown, folder)]
    if summary is not None:
        parts.append("<details><summary>summary.json</summary><pre>"
                     + html.escape(json.dumps(summary, indent=2), quote=False) + "</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(markdown: str, folder, summary: dict | None = None, name: str = "report.html") -> Path:
    """Write ``render_page(markdown, folder, summary)`` to ``folder / name`` and return the path."""
    path = Path(folder) / name
    path.write_text(render_page(markdown, folder, summary), encoding="utf-8")
    return path
