"""Sphinx glue for the GPipe book: the kernel-free explorer's data, site fixes and link roles.

Why an extension and not a page: the explorer on the published site must draw
exactly the tables ``gpipe_core`` builds and the numbers its formulas give, in
every build, executed page cache or not. So the data is written from
``gpipe_core`` itself (``explorer_data.py`` beside this file) when Sphinx
finishes the HTML, into ``_static``; the JavaScript next to it
(``book/_static/gpipe-explorer.js``) only draws it. ``gpipe-site.js`` mends the
themes' phone navigation button on every page.

The ``{points}`` role (``{points}`03_scheduler```) prints an assignment's points, summed
from the nbgrader metadata of its released notebook in ``notebooks/`` (generated from
``solutions/``, and present also in a learner copy of the course without it), so the
chapter pages cannot disagree with the gradebook.

The ``{repo}`` role links a file of the repository (``{repo}`autograder/README.md```),
and ``{colab}`` / ``{binder}`` open a notebook of it, all from ``repository.url``,
``repository.branch`` and ``launch_buttons`` in ``_config.yml``, so the book
never spells the repository's address a second time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docutils import nodes
from explorer_data import explorer_data  # book/_ext/explorer_data.py: the numbers, from gpipe_core
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.nodes import split_explicit_title

logger = logging.getLogger(__name__)
DATA_FILE = "gpipe-explorer-data.js"


def write_explorer_data(app: Sphinx, exception: Exception | None) -> None:
    """``_static/gpipe-explorer-data.js`` (settings, costs, the list of schedules) and one
    ``gpipe-explorer-<name>.js`` per schedule, which the page loads when a reader picks it."""
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    data = explorer_data()
    header = "// generated from gpipe_core by book/_ext/gpipe_book.py; do not edit\n"
    for name, schedule in data["schedules"].items():
        entries = json.dumps(schedule.pop("entries"), separators=(",", ":"))
        schedule["file"] = f"gpipe-explorer-{name}.js"
        (static / schedule["file"]).write_text(
            f"{header}window.GPIPE_EXPLORER.schedules[{json.dumps(name)}].entries = {entries};\n", encoding="utf-8")
    body = json.dumps(data, separators=(",", ":"))
    (static / DATA_FILE).write_text(f"{header}window.GPIPE_EXPLORER = {body};\n", encoding="utf-8")


def add_explorer_assets(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                        doctree: Any) -> None:
    """Load the explorer's data and renderer only on pages that hold an explorer."""
    if "gpipe-explorer" in context.get("body", ""):
        app.add_js_file(DATA_FILE)
        app.add_js_file("gpipe-explorer.js")
        app.add_css_file("gpipe-explorer.css")


def drop_duplicate_scripts(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                           doctree: Any) -> None:
    """Keep each script once per page.

    sphinx-thebe (0.3.x, pulled in by Jupyter Book) registers its inline
    configuration script twice under Sphinx 7, and the second copy's ``const``
    declarations throw a SyntaxError in every page's console.
    """
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    unique = []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        filename = str(getattr(script, "filename", script) or "")  # the copy has '' where the original has None
        key = (filename, tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique  # in place: handlers that run later add to this same list


def _repository(inliner: Any) -> tuple[str, str, dict[str, Any]]:
    """(url, branch, launch_buttons) from _config.yml, as Jupyter Book hands them to the theme."""
    theme = inliner.document.settings.env.config.html_theme_options or {}
    url = str(theme.get("repository_url", "")).rstrip("/")
    return url, theme.get("repository_branch") or "main", theme.get("launch_buttons") or {}


def _link(rawtext: str, uri: str, text: str, literal: bool = True) -> list[nodes.Node]:
    node = nodes.reference(rawtext, "", refuri=uri)
    node += nodes.literal(text, text) if literal else nodes.Text(text)
    return [node]


def _fail(inliner: Any, rawtext: str, lineno: int, message: str) -> tuple[list, list]:
    error = inliner.reporter.error(message, line=lineno)
    return [inliner.problematic(rawtext, rawtext, error)], [error]


def launch_only_notebooks(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                          doctree: Any) -> None:
    """Launch buttons only where a notebook can be opened: the learner notebooks (.ipynb) and
    the executed MyST pages that have a launchable copy beside them (``book/launch.py``).

    The theme also offers them on other executed MyST pages, but Colab cannot open a .md file
    and the Binder image has no jupytext to open it as a notebook: a dead button.
    """
    paired = Path(app.srcdir, pagename + ".ipynb").is_file()
    if context.get("page_source_suffix") != ".ipynb" and not paired and context.get("header_buttons"):
        context["header_buttons"][:] = [b for b in context["header_buttons"] if b.get("label") != "launch-buttons"]


def repo_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any,
              options: dict[str, Any] | None = None, content: list[str] | None = None) -> tuple[list, list]:
    """``{repo}`path``` -> a link to that file (or folder, ending in /) of the repository."""
    url, branch, _ = _repository(inliner)
    if not url:
        return _fail(inliner, rawtext, lineno, "the {repo} role needs repository.url in _config.yml")
    path = text.strip().lstrip("/")
    kind = "tree" if path.endswith("/") else "blob"
    return _link(rawtext, f"{url}/{kind}/{branch}/{path}", path), []


def launch_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any,
                options: dict[str, Any] | None = None, content: list[str] | None = None) -> tuple[list, list]:
    """``{colab}`notebooks/x.ipynb``` / ``{binder}`...``` -> open that notebook of the repository there.

    The same URLs the theme's launch buttons build, from the same _config.yml entries.
    """
    url, branch, launch = _repository(inliner)
    if not url.startswith("https://github.com/"):
        return _fail(inliner, rawtext, lineno, f"{{{name}}} needs a GitHub repository.url in _config.yml")
    org_repo = url.removeprefix("https://github.com/")
    path = text.strip().lstrip("/")
    if name == "colab":
        base = str(launch.get("colab_url") or "https://colab.research.google.com").rstrip("/")
        return _link(rawtext, f"{base}/github/{org_repo}/blob/{branch}/{path}", "Open in Colab", False), []
    base = str(launch.get("binderhub_url") or "https://mybinder.org").rstrip("/")
    return _link(rawtext, f"{base}/v2/gh/{org_repo}/{branch}?urlpath=lab/tree/{path}", "Open in Binder", False), []


def page_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any,
              options: dict[str, Any] | None = None, content: list[str] | None = None) -> tuple[list, list]:
    """``{page}`title <notebooks/01_x/x>``` -> a link to a page that may not be written yet.

    For the pages other people deliver (the learner notebooks, the distributed chapter): a
    normal document link when the page is part of this build; while it is missing (only
    possible in ``book/build.py --skip-missing`` builds, since a full build refuses a toc entry
    without its file) the title is shown as plain text instead of failing the partial build.
    """
    has_title, title, target = split_explicit_title(text)
    target = target.strip().removesuffix(".ipynb").removesuffix(".md").lstrip("/")
    env = inliner.document.settings.env
    label = title if has_title else target
    if target not in env.found_docs:
        logger.info(f"{{page}} {target} is not part of this build; shown as text", location=(env.docname, lineno))
        return [nodes.emphasis(label, label)], []
    node = addnodes.pending_xref(rawtext, refdomain="std", reftype="doc", reftarget="/" + target,
                                 refexplicit=has_title, refwarn=True, refdoc=env.docname)
    node += nodes.inline(label, label, classes=["xref", "std", "std-doc"])
    return [node], []


def assignment_points(assignment: str, root: Path, tree: str = "notebooks") -> int:
    """Total points of ``<tree>/<assignment>/*.ipynb``: every graded cell's nbgrader ``points``."""
    import nbformat

    notebooks = sorted((root / tree / assignment).glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebook in {tree}/{assignment}/")
    return int(sum(cell.metadata.get("nbgrader", {}).get("points", 0)
                   for path in notebooks for cell in nbformat.read(path, as_version=4).cells
                   if cell.metadata.get("nbgrader", {}).get("grade")))


def points_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any,
                options: dict[str, Any] | None = None, content: list[str] | None = None) -> tuple[list, list]:
    """``{points}`03_scheduler``` -> "14 points", read from the assignment's released notebook."""
    env = inliner.document.settings.env
    try:
        points = assignment_points(text.strip(), Path(env.srcdir))
    except FileNotFoundError as exc:
        return _fail(inliner, rawtext, lineno, f"{{points}}: {exc}; name an assignment folder of notebooks/")
    words = f"{points} points"
    return [nodes.inline(words, words, classes=["gpipe-points"])], []


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_role("points", points_role)
    app.add_role("repo", repo_role)
    app.add_role("colab", launch_role)
    app.add_role("binder", launch_role)
    app.add_role("page", page_role)
    app.add_js_file("gpipe-site.js")
    app.add_css_file("gpipe-site.css")
    app.connect("html-page-context", add_explorer_assets)
    app.connect("html-page-context", drop_duplicate_scripts, priority=1)
    app.connect("html-page-context", launch_only_notebooks, priority=502)  # after the theme's (501)
    app.connect("build-finished", write_explorer_data)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
