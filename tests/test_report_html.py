"""report.html: one self-contained page (plots as embedded PNG data URIs, nothing external)."""
import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest

from spikeport.report_html import PNG_SIGNATURE, markdown_to_html, render_page
from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons
from spikeport.traffic import PLOTS, run_traffic

# attributes through which a page loads or links something
URL_ATTRS = {"src", "href", "srcset", "poster", "data", "action", "background", "formaction", "xlink:href"}
EXTERNAL_TAGS = {"link", "script", "iframe", "object", "embed", "base", "source", "video", "audio"}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.refs, self.tags, self.cells, self.pre, self._in = [], [], [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if tag == "img" and name == "src":
                self.images.append(value)
            elif name in URL_ATTRS:
                self.refs.append((tag, name, value))
            elif name == "style" and "url(" in (value or ""):
                self.refs.append((tag, name, value))
        self._in = tag if tag in ("td", "pre", "style") else self._in

    def handle_endtag(self, tag):
        self._in = None if tag == self._in else self._in

    def handle_data(self, data):
        if self._in == "td":
            self.cells.append(data)
        elif self._in == "pre":
            self.pre.append(data)
        elif self._in == "style" and "url(" in data:
            self.refs.append(("style", "css", data))


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def _assert_self_contained(page: _Page, images: int):
    assert not page.refs, f"external references: {page.refs}"
    assert not EXTERNAL_TAGS & set(page.tags)
    assert len(page.images) == images
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def _tiny_net():
    conv = Conv2d(np.array([[[[1, 0, 1], [0, 2, 0], [1, 0, 1]]], [[[0, 1, 0], [1, 1, 1], [0, 1, 0]]]]), padding=(1, 1))
    dense = Dense(2 * np.random.default_rng(0).integers(-3, 6, (4, 2 * 5 * 5)))
    return IntNetwork((1, 5, 5), (Layer(conv, Neurons(vth=2)), Layer(dense, Neurons(vth=3))))


def test_traffic_report_html_is_one_self_contained_page(tmp_path):
    T = 6
    x = (np.random.default_rng(3).random((3, T, 1, 5, 5)) < 0.4).astype(np.int8)
    summary = run_traffic(_tiny_net(), x, "loihi1", tmp_path, description="random <test> spikes")
    assert "report.html" in summary["files"]
    page = _parse((tmp_path / "report.html").read_text(encoding="utf-8"))
    _assert_self_contained(page, images=len(PLOTS))
    nb = summary["neurobench"]
    assert nb["samples"] == 3 and nb["steps"] == T and [g["name"] for g in nb["groups"]] == ["layer0", "layer1"]
    assert str(nb["parameter_count"]) in page.cells and f"{nb['connection_sparsity']:.4f}" in page.cells
    assert "random <test> spikes" in " ".join(page.cells + [json.dumps(summary)])  # escaped, not markup
    assert json.loads("".join(page.pre)) == summary
    report = (tmp_path / "report.md").read_text()
    assert "## NeuroBench metrics" in report and f"| membrane updates | {nb['membrane_updates']:.6g} |" in report


def test_markdown_subset_tables_escapes_and_images(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "p.png", dpi=80)
    md = ("# Title `x`\n\nplain <b>text</b> http://example.com/a.png\n\n| a | b |\n|---|---|\n| 1 \\| 2 | <script> |\n\n"
          "- item one\n- item `two`\n\n![plot](p.png)\n")
    html = render_page(md, tmp_path, {"k": "<v>"})
    page = _parse(html)
    _assert_self_contained(page, images=1)
    assert page.cells == ["1 | 2", "<script>"] and "script" not in page.tags and "b" not in page.tags
    assert "<code>x</code>" in html and "<li>item <code>two</code></li>" in html
    assert json.loads("".join(page.pre)) == {"k": "<v>"}


@pytest.mark.parametrize("src,message", [("missing.png", "not found"), ("../p.png", "must be a file name"),
                                         ("http://example.com/p.png", "must be a file name"),
                                         ("notpng.png", "is not a PNG file")])
def test_images_must_be_png_files_of_the_report_folder(tmp_path, src, message):
    (tmp_path / "notpng.png").write_text("hello")
    with pytest.raises(ValueError, match=f"report image '{src}'.*{message}"):
        markdown_to_html(f"![x]({src})", tmp_path)
