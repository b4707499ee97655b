"""The static catalog site and its JSON API.

mkdocs-material builds the few hand-written pages of the site project (top-level `site/`);
formarket renders everything that comes from the registry (listing, publisher and catalog
pages, the browser's data shards, the JSON API) in the same look, straight from the registry
index, and re-renders only what changed. `render.render_site` is the pure core;
`build.build_site` does the reading and writing around it.
"""

from __future__ import annotations

from formarket.site.build import BuildReport, build_site
from formarket.site.render import Rendered, Theme, render_site

__all__ = ["BuildReport", "Rendered", "Theme", "build_site", "render_site"]
