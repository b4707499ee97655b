"""A publisher controls names, descriptions, READMEs and settings: none of it may become
markup, script or a link to a script anywhere on the site."""

from __future__ import annotations

import re
from pathlib import Path

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
