"""READMEs as HTML that cannot run code or reach outside the page unasked.

A README is written by a listing's publisher, not by the marketplace, so it is rendered with
raw HTML switched off (markdown-it escapes it as text) and every link and image is checked:

- links may only be http(s), mailto, or relative; markdown-it's own check already refuses
  `javascript:`, `vbscript:`, `file:` and `data:`, ours is an allow-list;
- relative links point at files in git (the listing's folder), which are not on the site: they
  become links to the file in the repository when the site knows it, and plain text otherwise
  (a link to nowhere would be a broken link);
- images become links: an image would be fetched from a third party on every page view;
- headings move one level down, so a README's `#` sits below the page's own title, and a first
  heading that only repeats the listing's name is dropped.

Its cost is bounded. The check refuses a README over `MAX_README` (REG029) and the site leaves
such a listing out; what is rendered is parsed in pieces of about `_PIECE` characters cut at
blank lines outside code fences, so that memory stays that of one piece (markdown-it's tokens
for a 1 MiB table took 600 MB at once), and the page stops growing at `_MAX_HTML`. The price is
that a link reference defined in one piece is not seen in another, and a table or list longer
than a piece goes on as plain paragraphs: nothing a README of ordinary size meets.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from urllib.parse import quote, unquote, urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

from formarket.registry.entries import MAX_README

__all__ = ["MAX_README", "render_readme", "safe_url"]

_PIECE = 64 << 10
_MAX_HTML = 4 << 20
_FENCE = re.compile(r" {0,3}(?:```|~~~)")
_TOO_LONG = '<p class="readme-cut"><em>The rest of this README is too long to show here.</em></p>\n'

_SCHEMES = frozenset({"http", "https", "mailto"})  # what `safe_url` and links allow
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EXTERNAL_REL = "nofollow noopener noreferrer ugc"


def safe_url(url: str) -> str | None:
    """`url` if it is absolute http(s) or mailto, else None."""
    text = url.strip()
    if not text.lower().startswith(("http://", "https://", "mailto:")):
        return None
    return None if _CONTROL.search(text) else text


def _allowed(url: str) -> bool:
    text = url.strip()
    if _CONTROL.search(text):
        return False
    scheme = urlsplit(text).scheme.lower()
    return scheme == "" or scheme in _SCHEMES


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = _allowed  # type: ignore[method-assign]
    return md


_MD = _parser()


def _resolve(href: str, folder: str, source_url: str | None) -> str | None:
    """Where a README link goes on the site: absolute links stay, fragments stay, paths
    inside the repository go to it there, anything else is dropped."""
    if safe_url(href) is not None:
        return href
    if href.startswith("#"):
        return href
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or source_url is None or not parts.path:
        return None
    # markdown-it percent-encodes what it cannot keep: "java\tscript:" arrives as a path.
    raw = unquote(parts.path)
    if _CONTROL.search(raw) or ":" in raw.split("/", 1)[0]:
        return None
    target = posixpath.normpath(posixpath.join(folder, parts.path))
    if target.startswith(("../", "/")) or target == "..":
        return None
    suffix = f"#{quote(parts.fragment)}" if parts.fragment else ""
    return f"{source_url.rstrip('/')}/{quote(target)}{suffix}"


def _fix_inline(children: Sequence[Token], folder: str, source_url: str | None) -> list[Token]:
    out: list[Token] = []
    stack: list[bool] = []  # for each open link: whether it was kept
    for token in children:
        if token.type == "link_open":
            href = _resolve(str(token.attrGet("href") or ""), folder, source_url)
            stack.append(href is not None)
            if href is None:
                continue
            token.attrSet("href", href)
            if safe_url(href) is not None:
                token.attrSet("rel", _EXTERNAL_REL)
        elif token.type == "link_close":
            if stack and not stack.pop():
                continue
        elif token.type == "image":
            src = _resolve(str(token.attrGet("src") or ""), folder, source_url)
            alt = token.content or "image"
            text = Token("text", "", 0, content=f"[image: {alt}]")
            if src is None:
                out.append(text)
                continue
            opened = Token("link_open", "a", 1, attrs={"href": src})
            if safe_url(src) is not None:
                opened.attrSet("rel", _EXTERNAL_REL)
            out.extend((opened, text, Token("link_close", "a", -1)))
            continue
        out.append(token)
    return out


def _pieces(text: str) -> list[str]:
    """The text cut into pieces of about `_PIECE` characters: at a blank line outside a code
    fence where one comes, else at a line's end, else (one enormous line) anywhere."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    fenced = False
    for line in text.splitlines(keepends=True):
        while len(line) > 2 * _PIECE:
            pieces.extend(["".join(current), line[:_PIECE]] if current else [line[:_PIECE]])
            current, size, line = [], 0, line[_PIECE:]
        if _FENCE.match(line):
            fenced = not fenced
        current.append(line)
        size += len(line)
        if size >= 2 * _PIECE or (size >= _PIECE and not fenced and not line.strip()):
            pieces.append("".join(current))
            current, size = [], 0
    if current:
        pieces.append("".join(current))
    return pieces


def render_readme(text: str, *, title: str, folder: str, source_url: str | None) -> str:
    """The README as HTML. `folder` is the listing's folder in the repository (relative
    links resolve against it); `source_url` is where the repository's files are browsed,
    such as https://github.com/OWNER/REPO/blob/main, or None when the site does not know.
    A README over `MAX_README` (which the check refuses) is not rendered at all."""
    if len(text) > MAX_README or len(text.encode("utf-8", "replace")) > MAX_README:
        return _TOO_LONG
    html: list[str] = []
    size = 0
    for number, piece in enumerate(_pieces(text)):
        if size > _MAX_HTML:
            html.append(_TOO_LONG)
            break
        rendered = _render_piece(piece, title if number == 0 else None, folder, source_url)
        html.append(rendered)
        size += len(rendered)
    return "".join(html)


def _render_piece(text: str, title: str | None, folder: str, source_url: str | None) -> str:
    tokens = _MD.parse(text)
    if (
        title is not None
        and len(tokens) >= 3
        and tokens[0].type == "heading_open"
        and tokens[0].tag == "h1"
        and tokens[1].content.strip().lower() in (title.strip().lower(), "")
    ):
        tokens = tokens[3:]
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            level = min(int(token.tag[1]) + 1, 6)
            token.tag = f"h{level}"
        if token.children:
            token.children = _fix_inline(token.children, folder, source_url)
    html: str = _MD.renderer.render(tokens, _MD.options, {})
    return html
