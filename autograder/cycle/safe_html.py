"""One sanitiser for every feedback page, because learner HTML reaches the page by more roads than one.

A feedback page shows a learner's notebook: their markdown (which may hold raw
HTML), their outputs and their cells' metadata, rendered by nbconvert with
nbgrader's feedback template. That template renders markdown without cleaning
it, prints some metadata unescaped, and turns ``text/html``,
``application/javascript`` and SVG outputs into live markup; nbconvert's own
``sanitize_html`` never sees the markdown. So nothing is cleaned on the way
in: :func:`page` cleans the finished page, whatever road the markup took.

:func:`page` keeps the head's ``<style>`` blocks (the template's own CSS; the
head holds nothing of the learner's) and replaces the rest of the head with a
fixed one that carries a Content-Security-Policy forbidding every script,
frame, form and outside request but images. The body goes through
:func:`clean`, an allow-list built on ``nh3`` (the Rust ``ammonia``
sanitiser): formatting, tables, lists, code, links and images only. Every
``<script>``, ``<style>``, ``<svg>``, ``<math>``, ``<iframe>``, ``<object>``,
``<embed>``, ``<form>``, ``<meta>``, ``<base>`` and every other tag off the
list goes, with every ``on*`` handler and ``style`` attribute (a table cell
keeps its ``text-align``). Links may point to ``http``, ``https``, ``mailto``
or a ``#fragment`` of the page; images may show ``http``/``https`` URLs or
inline PNG (``data:image/png;base64``, how nbconvert embeds plots): a
``javascript:``, ``vbscript:``, ``file:`` or other ``data:`` URL, or a relative
path, is dropped. The page runs no script at all: MathJax goes too, so
formulas show as their TeX source. ``tests/grading/test_feedback_safety.py``
opens pages built from injected payloads in Chromium and checks that none runs.
"""

from __future__ import annotations

import html
import re

import nh3

TAGS = {"a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div",
        "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
        "li", "main", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong", "sub",
        "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var"}
# removed with everything inside them (the others off the list lose their tags but keep their text)
DROPPED_WITH_CONTENT = {"script", "style", "svg", "math", "iframe", "object", "noscript", "template", "textarea",
                        "select", "title", "xmp", "noembed", "noframes", "frameset", "head"}
ATTRIBUTES = {"*": {"class", "id", "title"}, "a": {"href", "name"}, "img": {"src", "alt", "width", "height"},
              "td": {"colspan", "rowspan", "style"}, "th": {"colspan", "rowspan", "style"}, "ol": {"start"}}
SCHEMES = {"http", "https", "mailto", "data"}  # data: only survives as an inline PNG (see _url)
STYLE_PROPERTIES = {"text-align"}  # markdown tables align their columns with it
INLINE_PNG = re.compile(r"data:image/png;base64,[a-z0-9+/=]*")
LINK = re.compile(r"(https?://|mailto:|#)")
IMAGE = re.compile(r"https?://")
STYLE_BLOCK = re.compile(r"<style\b[^>]*>.*?</style\s*>", re.S | re.I)
BODY = re.compile(r"<body\b[^>]*>", re.I)
# the second line of defence: should a script ever get past clean(), the browser still refuses to run it
POLICY = ("default-src 'none'; img-src data: http: https:; style-src 'unsafe-inline'; "
          "base-uri 'none'; form-action 'none'")

_cleaner: nh3.Cleaner | None = None


def _url(tag: str, attribute: str, value: str) -> str | None:
    """An ``href`` or ``src`` if its scheme is allowed there (checked as a browser reads it), else None."""
    if attribute not in ("href", "src"):
        return value
    plain = re.sub(r"[\x00-\x20]", "", value).lower()  # browsers ignore these inside a scheme: "java\tscript:"
    if attribute == "href" and tag == "a":
        return value if LINK.match(plain) else None
    if attribute == "src" and tag == "img":
        return value if INLINE_PNG.fullmatch(plain) or IMAGE.match(plain) else None
    return None


def _relative(url: str) -> str | None:
    return url if url.startswith("#") else None  # a page of its own: no other file is meant to be reached


def cleaner() -> nh3.Cleaner:
    """The feedback pages' one allow-list, built once (``nh3.Cleaner`` is reusable and thread-safe)."""
    global _cleaner
    if _cleaner is None:
        _cleaner = nh3.Cleaner(tags=TAGS, clean_content_tags=DROPPED_WITH_CONTENT, attributes=ATTRIBUTES,
                               attribute_filter=_url, url_schemes=SCHEMES, url_relative=_relative,
                               filter_style_properties=STYLE_PROPERTIES, strip_comments=True,
                               link_rel="noopener noreferrer")
    return _cleaner


def clean(fragment: str) -> str:
    """``fragment`` with only the allowed tags, attributes and URLs left (module docstring)."""
    return cleaner().clean(fragment)


def page(document: str, title: str) -> str:
    """A safe page from nbconvert's ``document``: its head's own styles, a fixed head, and the body cleaned.

    The head of ``document`` must come from the template alone (nbgrader's
    feedback template puts nothing of the notebook there but the notebook's
    name, which ``title`` replaces); everything from the first ``<body>`` on
    is treated as hostile.
    """
    start = BODY.search(document)
    if start is None:
        raise ValueError("the rendered page has no <body>: render it with nbgrader's feedback template "
                         "(autograder.cycle.publish.feedback_page)")
    styles = "\n".join(STYLE_BLOCK.findall(document[:start.start()]))
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{POLICY}\">\n"
            f"<title>{html.escape(title)}</title>\n{styles}\n</head>\n<body>\n"
            f"{clean(document[start.end():])}\n</body>\n</html>\n")
