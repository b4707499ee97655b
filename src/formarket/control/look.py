"""The dashboard in the catalog's look: Material's stylesheets and logo, the ones the catalog
site is built with (the `mkdocs-material` the product depends on), and the catalog's own
additions (`site/docs/assets/formarket/site.css`), served by the control plane itself so that
a page calls no third party and needs no build step.

    Look        the stylesheets by name and the logo, read once
    load_look   read them from the installed Material and the site project
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from formarket.errors import NotFoundError

__all__ = ["Look", "load_look"]

# The catalog's palette (site/mkdocs.yml): the pages' <body> names it, Material's palette
# stylesheet turns it into colours.
PALETTE = {"scheme": "default", "primary": "indigo", "accent": "indigo"}
_LOGO = "material/storefront-outline.svg"


@dataclass(frozen=True)
class Look:
    stylesheets: dict[str, bytes]  # file name -> CSS, in the order pages link them
    logo: str  # inline SVG

    def etag(self, name: str) -> str:
        return '"' + hashlib.sha256(self.stylesheets[name]).hexdigest()[:32] + '"'


def _one(folder: Path, pattern: str) -> bytes:
    found = sorted(folder.glob(pattern))
    if not found:
        raise NotFoundError(
            f"Material's {pattern} is not in {folder}",
            hint="reinstall the product's dependencies: `make` does it (pip install -e .)",
        )
    return found[-1].read_bytes()


def _site_css() -> bytes:
    """The catalog's additions, from the site project of the checkout this code runs from; a
    product installed without its site project shows Material's look without them."""
    path = Path(__file__).resolve().parents[3] / "site" / "docs" / "assets" / "formarket"
    css = path / "site.css"
    return css.read_bytes() if css.is_file() else b""


def load_look() -> Look:
    templates = Path(str(resources.files("material"))) / "templates"
    styles = templates / "assets" / "stylesheets"
    sheets = {
        "material.css": _one(styles, "main.*.min.css"),
        "palette.css": _one(styles, "palette.*.min.css"),
        "catalog.css": _site_css(),
    }
    logo = (templates / ".icons" / _LOGO).read_text()
    return Look({name: css for name, css in sheets.items() if css}, logo)
