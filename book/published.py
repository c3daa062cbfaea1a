"""The published book's address, and the one function that links a page of it.

The learner notebooks link the book's executed page of each experiment they
repeat. Those links must open the built page (figures measured, outputs shown),
not the page's MyST source on GitHub, so they point at the published site.
``_config.yml`` names the repository, not the site: the site's address is
derived from ``repository.url`` the way GitHub Pages publishes it
(``.github/workflows/pages.yml``: ``https://<owner>.github.io/<repository>/``),
unless ``html.baseurl`` in ``_config.yml`` names another host. Sphinx writes
``book/x/y.md`` to ``book/x/y.html`` under that address.

``tests/test_course_links.py`` checks that every link from a notebook to a book
page is :func:`page_url` of that page, so a changed ``repository.url`` fails
there until the links in ``solutions/`` follow it.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def site_url(config: dict | None = None) -> str:
    """The published book's root address, ending in ``/``."""
    config = config if config is not None else yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    base = str((config.get("html") or {}).get("baseurl") or "")
    if base:
        return base.rstrip("/") + "/"
    url = str(config["repository"]["url"]).rstrip("/")
    found = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?", url)
    if not found:
        raise ValueError(f"repository.url {url!r} is not https://github.com/<owner>/<name>: set html.baseurl "
                         "in _config.yml to the address the book is published at")
    owner, name = found.group(1).lower(), found.group(2)
    if name.lower() == f"{owner}.github.io":  # a user or organisation site is served from the root
        return f"https://{owner}.github.io/"
    return f"https://{owner}.github.io/{name}/"


def page_url(page: str, config: dict | None = None) -> str:
    """The published page of ``page`` (``book/experiments/speedup``, with or without ``.md``)."""
    page = page.strip().lstrip("/").removesuffix(".md").removesuffix(".ipynb")
    return f"{site_url(config)}{page}.html"
