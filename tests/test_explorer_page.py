"""The explorer's page script in a browser, on data written as the book writes it, without building the book.

The site tests (tests/test_book.py) check the explorer on the built book, which
takes minutes; these check its controls, the link slider included, on a page of
their own: the data for K = 1..4 and M = 1..8 written by the book's own
extension (``write_explorer_data``), the page's script and style from
``book/_static``, served from a temporary folder.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.book import PHONE, explorer_state, load_module, open_page, pick, serving, set_control

from gpipe_core.schedules.zoo import BUILTINS
from gpipe_core.sim.comm import Comm
from gpipe_core.sim.simulate import Costs, simulate

ROOT = Path(__file__).resolve().parents[1]
PAGE = """<!doctype html><html><head><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="_static/gpipe-explorer.css"></head><body>
<div class="gpipe-explorer" data-k="4" data-m="8" data-schedule="1f1b"></div>
<script src="_static/gpipe-explorer-data.js"></script><script src="_static/gpipe-explorer.js"></script>
</body></html>"""


@pytest.fixture(scope="module")
def mini_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    data = load_module("explorer_data", ROOT / "book" / "_ext" / "explorer_data.py")
    book = load_module("gpipe_book", ROOT / "book" / "_ext" / "gpipe_book.py")
    folder = tmp_path_factory.mktemp("explorer")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "MAX_K", 4)
        patch.setattr(data, "MAX_M", 8)
        book.write_explorer_data(SimpleNamespace(outdir=str(folder), builder=SimpleNamespace(format="html")), None)
    for asset in ("gpipe-explorer.js", "gpipe-explorer.css"):
        shutil.copy(ROOT / "book" / "_static" / asset, folder / "_static" / asset)
    (folder / "explorer.html").write_text(PAGE, encoding="utf-8")
    with serving(folder) as url:
        yield url


def starts(state: dict) -> dict[str, float]:
    return {action: start for action, _, start in state["actions"]}


def test_the_link_slider_redraws_the_timeline_the_simulator_gives(browser: object, mini_site: str) -> None:
    page = open_page(browser, mini_site, viewport={"width": 1280, "height": 900})
    page.goto(f"{mini_site}/explorer.html")
    page.wait_for_selector(".gpipe-explorer rect[data-action]")
    pick(page, "zb-h1")
    set_control(page, "cost", 1)  # 1 : 1 : 1
    free = explorer_state(page)
    shown = []
    for link, comm in ((1, Comm(latency=0.25)), (2, Comm(latency=0.25, overlap=False))):
        set_control(page, "link", link)
        state = explorer_state(page)
        shown.append(page.locator(".gpipe-explorer output[data-role=link-value]").text_content())
        want = simulate(BUILTINS["zb-h1"].build(8, 4), 4, Costs(1, 2, input_grad=1, weight_grad=1, comm=comm))
        assert starts(state) == {f"{e.kind}{e.microbatch}@{e.stage}": e.start for e in want.events}
        assert state["bubble"] == f"{want.bubble():.3f}" != free["bubble"]
        assert state["memory"] == free["memory"] == [4, 4, 4, 4]  # the order alone sets the memory
    assert "beside the compute" in shown[0] and "waits" in shown[1]
    assert not page.js_errors, page.js_errors
    page.context.close()


def test_the_explorer_with_a_link_fits_a_phone(browser: object, mini_site: str) -> None:
    phone = open_page(browser, mini_site, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    phone.goto(f"{mini_site}/explorer.html")
    phone.wait_for_selector(".gpipe-explorer rect[data-action]")
    set_control(phone, "link", 2)  # the longest label
    pick(phone, "dualpipev")
    state = explorer_state(phone)
    assert state["actions"] and state["pageWidth"] <= PHONE["width"], f"the page is {state['pageWidth']} px wide"
    assert not phone.js_errors, phone.js_errors
    phone.context.close()
