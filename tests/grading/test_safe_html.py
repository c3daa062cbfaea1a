"""The feedback pages' sanitiser on each family of payload, without a browser (the browser test is next door).

Every case names what must go and what must stay, so a sanitiser that kept
too much fails, and so does one that emptied the page.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from autograder.cycle.safe_html import POLICY, clean, page

JS = "alert(document.domain)"
PNG = "data:image/png;base64,iVBORw0KGgo="

# (family, payload, what must not be in the result (lower case), what must stay)
FAMILIES = [
    ("script tag", f"<p>kept</p><script>{JS}</script><SCRIPT SRC=//evil.org/x.js></SCRIPT>", ["<script", JS], ["kept"]),
    ("event handlers", f'<img src="{PNG}" alt="plot" onerror="{JS}" onload="{JS}"><b onmouseover="{JS}">kept</b>',
     ["onerror", "onload", "onmouseover"], [f'src="{PNG}"', 'alt="plot"', "<b>kept</b>"]),
    ("javascript: links", f'<a href="javascript:{JS}">a</a><a href=" JaVa&#x09;ScRiPt:{JS}">b</a>'
     f'<a href="&#106;avascript:{JS}">c</a><a href="\x01javascript:{JS}">d</a>', ["javascript", "href"],
     [">a</a>", ">d</a>"]),
    ("other schemes", '<a href="vbscript:msgbox(1)">v</a><a href="file:///etc/passwd">f</a>'
     '<a href="livescript:x">l</a>', ["vbscript", "file:", "livescript", "href"], [">v</a>", ">f</a>"]),
    ("data: urls", f'<a href="data:text/html,<script>{JS}</script>">l</a><img src="data:image/svg+xml;base64,PHN2Zz4=">'
     f'<img src="data:text/html;base64,PHNjcmlwdD4="><img src="data:image/png;charset=utf-8,<svg onload={JS}>">',
     ["data:", "<script", "onload"], [">l</a>", "<img>"]),
    ("svg", f'<svg onload="{JS}"><script>{JS}</script><a xlink:href="javascript:{JS}"><text>t</text></a></svg>after',
     ["<svg", "onload", "<script", "javascript", "xlink"], ["after"]),
    ("math and style tricks", f'<math><mtext><table><mglyph><style><img src=x onerror="{JS}">'
     f"</style></mglyph></table></mtext></math>after<style>*{{background:url(javascript:{JS})}}</style>end",
     ["<math", "<style", "onerror", "javascript"], ["after", "end"]),
    ("frames and plugins", f'<iframe srcdoc="<script>{JS}</script>"></iframe><iframe src="javascript:{JS}"></iframe>'
     f'<object data="javascript:{JS}"></object><embed src="data:text/html,x"><applet code=x></applet>after',
     ["<iframe", "srcdoc", "<object", "<embed", "<applet", "javascript", "data:"], ["after"]),
    ("forms", f'<form action="javascript:{JS}"><input name=x autofocus onfocus="{JS}"><button formaction='
     f'"javascript:{JS}">go</button></form>', ["<form", "<input", "<button", "onfocus", "javascript"], ["go"]),
    ("head tags in the body", f'<meta http-equiv="refresh" content="0;url=javascript:{JS}"><base href="//evil.org/">'
     f'<link rel=stylesheet href="//evil.org/x.css">after', ["<meta", "<base", "<link", "evil.org"], ["after"]),
    ("styles and comments", f'<div style="position:fixed;background:url(javascript:{JS})">d</div>'
     f"<!-- <img src=x onerror={JS}> --><p>kept</p>", ["style", "position", "<!--", "onerror"],
     ["<div>d</div>", "<p>kept</p>"]),
    ("parser confusion", f'<noscript><p title="</noscript><img src=x onerror={JS}>"></noscript>'
     f"<template><img src=x onerror={JS}></template><xmp><img src=x onerror={JS}></xmp>after",
     ["<noscript", "<template", "<xmp"], ["after"]),
]


def start_tags(text: str) -> list[tuple[str, dict[str, str | None]]]:
    found: list[tuple[str, dict[str, str | None]]] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, dict(attrs)))

    Parser().feed(text)
    return found


@pytest.mark.parametrize("family,payload,gone,kept", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_each_payload_family_is_removed_and_the_text_around_it_stays(family: str, payload: str, gone: list[str],
                                                                      kept: list[str]) -> None:
    out = clean(payload)
    lower = out.lower()
    assert not [g for g in gone if g in lower], f"{family}: {out!r} still holds {[g for g in gone if g in lower]}"
    assert all(k in out for k in kept), f"{family}: {out!r} lost one of {kept}"
    for tag, attrs in start_tags(out):
        assert not [a for a in attrs if a.startswith("on")], (family, tag, attrs)
    assert clean(out) == out, f"{family}: cleaning twice changes it, so a browser may read it otherwise: {out!r}"


def test_what_a_feedback_page_is_made_of_stays() -> None:
    nbconvert_like = (
        '<h2 id="1.-Split">1. Split<a class="anchor-link" href="#1.-Split">¶</a></h2>'
        '<div class="highlight hl-ipython3"><pre><span class="k">def</span> <span class="nf">f</span>()</pre></div>'
        '<table><thead><tr><th style="text-align: right">K</th></tr></thead><tbody><tr><td>4</td></tr></tbody></table>'
        f'<img alt="a plot" src="{PNG}" width="300"><a name="test_x"></a>'
        '<a href="https://arxiv.org/abs/1811.06965">paper</a> <a href="mailto:ta@example.org">ask</a>'
        "<ul><li><code>partition</code> <strong>bold</strong> <em>em</em></li></ul><blockquote>q</blockquote>")
    out = clean(nbconvert_like)
    tags = start_tags(out)
    assert ("a", {"class": "anchor-link", "href": "#1.-Split", "rel": "noopener noreferrer"}) in tags, out
    assert ("h2", {"id": "1.-Split"}) in tags and ("span", {"class": "k"}) in tags
    assert ("th", {"style": "text-align:right"}) in tags
    assert ("img", {"alt": "a plot", "src": PNG, "width": "300"}) in tags
    assert ("a", {"name": "test_x", "rel": "noopener noreferrer"}) in tags
    assert {t for t, _ in tags} >= {"table", "thead", "tbody", "tr", "td", "pre", "ul", "li", "code", "strong", "em",
                                    "blockquote"}
    hrefs = [a.get("href") for t, a in tags if t == "a"]
    assert "https://arxiv.org/abs/1811.06965" in hrefs and "mailto:ta@example.org" in hrefs


@pytest.mark.parametrize("url", ["other.html", "../bob/02_partitioner/partitioner.html", "/etc/passwd", "//evil.org/x"])
def test_links_to_other_files_are_dropped(url: str) -> None:
    assert clean(f'<a href="{url}">x</a><img src="{url}">') == '<a rel="noopener noreferrer">x</a><img>'


def test_a_page_keeps_the_head_styles_drops_its_scripts_and_cleans_the_body() -> None:
    document = ("<!DOCTYPE html><html><head><title>old</title><style>.panel{color:red}</style>"
                "<script src='https://cdn.example/mathjax.js'></script><style type='text/css'>pre{margin:0}</style>"
                f"</head>\n<body class=x>\n<p>verdict</p><script>{JS}</script><style>body{{display:none}}</style>"
                "</body></html>")
    out = page(document, "partitioner <1>")
    head, body = out.split("<body>")
    assert ".panel{color:red}" in head and "pre{margin:0}" in head
    assert "<script" not in out and "mathjax" not in out and "display:none" not in body
    assert "<title>partitioner &lt;1&gt;</title>" in head and f'content="{POLICY}"' in head
    assert "<p>verdict</p>" in body
    assert "default-src 'none'" in POLICY and "script-src" not in POLICY  # so no script may run, inline or not


def test_a_page_without_a_body_is_refused() -> None:
    with pytest.raises(ValueError, match="feedback template"):
        page("<html><head></head></html>", "x")
