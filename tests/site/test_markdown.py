"""READMEs are written by publishers: nothing in one may run code or reach outside unasked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formarket.site.markdown import render_readme, safe_url

SOURCE = "https://github.com/example-org/marketplace/blob/main"
FOLDER = "registry/agents/acme/helper"


def render(text: str, source: str | None = SOURCE) -> str:
    return render_readme(text, title="Helper", folder=FOLDER, source_url=source)


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "<iframe src=https://evil.example></iframe>",
        '<a href="javascript:alert(1)">x</a>',
        "<style>body{display:none}</style>",
        "<!-- --><script>alert(1)</script>",
    ],
)
def test_raw_html_is_shown_as_text(hostile: str) -> None:
    html = render(f"Hello\n\n{hostile}\n")

    assert "<script" not in html
    assert "<iframe" not in html
    assert "<img" not in html
    assert "<style" not in html
    assert "<a " not in html
    assert "&lt;" in html


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        "java\tscript:alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "ftp://example.org/x",
    ],
)
def test_links_to_other_schemes_are_not_links(url: str) -> None:
    html = render(f"[click](<{url}>) and ![img](<{url}>)")

    assert "<a " not in html
    assert "href" not in html
    assert "src=" not in html


def test_web_links_stay_and_are_marked_as_user_content() -> None:
    html = render("[site](https://example.org/a?b=1) [mail](mailto:a@example.org)")

    assert '<a href="https://example.org/a?b=1" rel="nofollow noopener noreferrer ugc">' in html
    assert '<a href="mailto:a@example.org"' in html


def test_relative_links_go_to_the_file_in_the_repository() -> None:
    html = render("[code](agent/agent.py#L3) [up](../other/README.md) [top](#usage)")

    assert f'href="{SOURCE}/{FOLDER}/agent/agent.py#L3"' in html
    assert f'href="{SOURCE}/registry/agents/acme/other/README.md"' in html
    assert 'href="#usage"' in html


def test_relative_links_become_text_when_the_repository_is_unknown() -> None:
    html = render("[code](agent/agent.py) and [out](../../../../../etc/passwd)", source=None)

    assert "<a " not in html
    assert "code" in html
    assert "out" in html


def test_links_leaving_the_repository_are_dropped() -> None:
    html = render("[out](../../../../../etc/passwd)")

    assert "<a " not in html


def test_images_become_links_so_nothing_is_fetched_from_third_parties() -> None:
    html = render("![a chart](https://cdn.example.org/chart.png)")

    assert "<img" not in html
    assert '<a href="https://cdn.example.org/chart.png"' in html
    assert "[image: a chart]" in html


def test_headings_sit_below_the_page_title_and_a_repeated_title_is_dropped() -> None:
    html = render("# Helper\n\nIntro\n\n## Usage\n\n###### Deep\n")

    assert "<h1" not in html
    assert "Helper</h" not in html
    assert "<h3>Usage</h3>" in html
    assert "<h6>Deep</h6>" in html


def test_a_first_heading_that_is_not_the_title_is_kept() -> None:
    assert "<h2>Overview</h2>" in render("# Overview\n\ntext\n")


def test_tables_and_code_render() -> None:
    html = render("| a | b |\n|---|---|\n| 1 | 2 |\n\n```sh\necho <hi>\n```\n")

    assert "<table>" in html
    assert "<td>1</td>" in html
    assert '<code class="language-sh">echo &lt;hi&gt;' in html


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://example.org", True),
        ("http://example.org/x", True),
        ("mailto:a@b.c", True),
        ("javascript:alert(1)", False),
        ("//evil.example/x", False),
        ("/local", False),
        ("https://exa\nmple.org", False),
    ],
)
def test_safe_url_allows_only_absolute_web_and_mail_links(url: str, kept: bool) -> None:
    assert (safe_url(url) is not None) is kept


@given(st.text(max_size=300))
def test_any_text_renders_without_raw_tags_or_script_links(text: str) -> None:
    html = render(text)

    lowered = html.lower()
    assert "<script" not in lowered
    assert 'href="javascript' not in lowered
    assert 'href="data' not in lowered
