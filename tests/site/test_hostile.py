"""A publisher controls names, descriptions, READMEs and settings: none of it may become
markup, script or a link to a script anywhere on the site."""

from __future__ import annotations

import re
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from formarket.site.markdown import MAX_README, _pieces, render_readme

from .conftest import Build, make_registry

HOSTILE_NAME = '<script>alert("n")</script>'
HOSTILE_DESCRIPTION = (
    '"><img src=x onerror=alert(1)> <svg onload=alert(2)> </script><script>alert(3)</script>'
)
README = """# Evil

<script>alert("readme")</script>
<a href="javascript:alert(4)">raw link</a>
[md link](javascript:alert(5)) [data](data:text/html;base64,PHNjcmlwdD4=)
![pixel](https://tracker.example/p.gif) <iframe src="https://evil.example/"></iframe>
<div onclick="alert(6)">div</div>
"""
LISTING = f"""id: tinyforge/evil-agent
kind: agent
name: '{HOSTILE_NAME}'
version: 1.0.0
description: '{HOSTILE_DESCRIPTION}'
license: MIT
tags: [evil]
links:
  homepage: "https://evil.example/\\"><script>alert(7)</script>"
agent_type: other
framework: custom
runtime: python
tools:
  - name: pwn
    description: '<b onmouseover=alert(8)>tool</b>'
settings_schema:
  type: object
  properties:
    x: {{type: string, description: '</code></pre><script>alert(9)</script>'}}
resources:
  minimum: {{vcpus: 1, memory_mib: 512, disk_gib: 5}}
pricing:
  model: free
monetization:
  royalty_percent: "0"
"""
FORMFILE = """NAME evil-agent
FROM busybox
VCPU 1
MEMORY 512
DISK 5
ENTRYPOINT ["/bin/sh", "-c", "echo '<script>alert(10)</script>'"]
"""


def _texts(out: Path) -> list[tuple[str, str]]:
    return [
        (p.relative_to(out).as_posix(), p.read_text())
        for p in out.rglob("*.html")
        if ".formarket" not in p.parts
    ]


def test_hostile_listing_is_escaped_everywhere(tmp_path: Path, build: Build) -> None:
    folder = "registry/agents/tinyforge/evil-agent"
    root = make_registry(
        tmp_path / "market",
        {
            f"{folder}/listing.yaml": LISTING.encode(),
            f"{folder}/README.md": README.encode(),
            f"{folder}/Formfile": FORMFILE.encode(),
        },
    )
    report = build(root)
    out = report.out
    assert report.skipped_documents == 0, "the hostile listing must be valid to be tested"
    page = (out / "agents/tinyforge/evil-agent/index.html").read_text()
    assert "&lt;script&gt;alert(&#34;n&#34;)&lt;/script&gt;" in page

    for rel, html in _texts(out):
        scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.DOTALL)
        assert not any("alert(" in s for s in scripts), rel
        assert not re.search(r"<(img|svg|iframe|div|b)\b[^>]*\bon\w+=", html, re.IGNORECASE), rel
        assert not re.search(
            r"""(href|src)\s*=\s*["']?\s*(javascript|data|vbscript):""", html, re.I
        ), rel
        assert "<iframe" not in html, rel
        assert 'tracker.example/p.gif"' not in html or "<img" not in html, rel
    # The homepage link breaks out of nothing either: it is an attribute value, escaped.
    assert 'href="https://evil.example/&#34;&gt;&lt;script&gt;' in page
    assert "&lt;/code&gt;&lt;/pre&gt;&lt;script&gt;" in page


def test_hostile_text_in_the_browser_data_stays_data(tmp_path: Path, build: Build) -> None:
    folder = "registry/agents/tinyforge/evil-agent"
    root = make_registry(
        tmp_path / "market",
        {
            f"{folder}/listing.yaml": LISTING.encode(),
            f"{folder}/README.md": README.encode(),
            f"{folder}/Formfile": FORMFILE.encode(),
        },
    )
    out = build(root).out

    records = "".join(p.read_text() for p in (out / "catalog/records").glob("*.json"))
    assert HOSTILE_NAME.replace('"', '\\"') in records  # JSON, inserted as text by the script
    for page in ("index.html", "agents/index.html", "compatibility/index.html"):
        html = (out / page).read_text()
        block = re.search(
            r'<script type="application/json" id="fm-data">(.*?)</script>', html, re.S
        )
        assert block is not None
        assert "</" not in block.group(1)


# --- only what the check accepted, at a bounded cost -----------------------------------------


def test_a_listing_with_errors_is_left_out(tmp_path: Path, build: Build) -> None:
    """A README over the limit (REG029) is an error: the listing, and what is made of it,
    are not on the site, though the listing's own document is valid."""
    folder = "registry/models/tinyforge/tiny-embed"
    root = make_registry(tmp_path / "market", {f"{folder}/README.md": b"# big\n" * (200_000)})
    report = build(root)
    assert report.skipped_documents >= 1
    assert not (report.out / "models/tinyforge/tiny-embed").exists()
    for _, html in _texts(report.out):
        assert "models/tinyforge/tiny-embed/" not in html
    # The rest of the catalog is there.
    assert (report.out / "models/tinyforge/echo-chat/index.html").is_file()


def _render_with_little_memory(text: str, spare: int) -> tuple[int, float]:
    """Render in a child process whose address space may grow by `spare` bytes at most; the
    size of the page (-1 when it ran out of memory) and the CPU seconds it took."""
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + spare, resource.RLIM_INFINITY))
    started = time.process_time()
    try:
        page = render_readme(text, title="t", folder="registry/models/a/b", source_url=None)
    except MemoryError:
        return -1, time.process_time() - started
    return len(page), time.process_time() - started


def test_a_readme_just_under_the_limit_renders_at_a_bounded_cost() -> None:
    # Tables, emphasis and links, the shapes markdown-it spends most on, just under 1 MiB.
    shape = "|a|*b* [c](d)|\n|-|-|\n"
    text = (shape * (MAX_README // len(shape) + 1))[: MAX_README - 1]
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
        # 256 MiB more at most (a 1 MiB table took 600 MB when parsed at once).
        size, seconds = pool.submit(_render_with_little_memory, text, 256 << 20).result()
    assert size > 0, "ran out of memory"
    assert size < 5 << 20
    # CPU time, which other work on the machine does not stretch: seconds, not minutes.
    assert seconds < 60, f"{seconds:.0f} s of CPU"


def test_a_readme_over_the_limit_is_not_rendered() -> None:
    html = render_readme("*a* " * (MAX_README // 4 + 1), title="t", folder="x", source_url=None)
    assert "too long to show" in html
    assert len(html) < 200


@given(st.text(alphabet="ab *_[]()|-`\n>#", max_size=3000))
def test_pieces_keep_every_character(text: str) -> None:
    assert "".join(_pieces(text)) == text


def test_pieces_do_not_cut_a_code_fence() -> None:
    fence = "```\n" + "line\n\n" * 20_000 + "```\n"
    text = "intro\n\n" + fence + "after\n"
    pieces = _pieces(text)
    assert any(fence.strip() in p for p in pieces) or len(fence) > 2 * (64 << 10)
