"""What the book computes without building it: the toc, the launchable notebooks, the explorer's numbers.

These checks need no browser and no Sphinx run, so they say quickly and
precisely what is wrong; ``tests/test_book.py`` then checks the built site as a
reader meets it.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import yaml
from helpers.book import load_module

from gpipe_core.schedules.schedule import device_orders, flatten
from gpipe_core.schedules.zoo import BUILTINS
from gpipe_core.sim.simulate import Costs, peak_memory, simulate
from gpipe_core.sim.theory import bubble_fraction

ROOT = Path(__file__).resolve().parents[1]


build = load_module("book_build", ROOT / "book" / "build.py")  # not PyPA's `build`
launch = load_module("launch", ROOT / "book" / "launch.py")
sys.path.insert(0, str(ROOT / "book" / "_ext"))
explorer_data = load_module("explorer_data", ROOT / "book" / "_ext" / "explorer_data.py")
gpipe_book = load_module("gpipe_book", ROOT / "book" / "_ext" / "gpipe_book.py")


def toc_entries() -> list[str]:
    return build.toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8")))


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]


# ---------------------------------------------------------------- the toc and the build script

def test_toc_names_every_assignment_notebook_and_every_file_exists() -> None:
    expected = {f"notebooks/{n}/{n.split('_', 1)[1]}" for n in
                ("01_microbatching", "02_partitioner", "03_scheduler", "04_recomputation", "05_assembling")}
    learner = {e for e in toc_entries() if e.startswith("notebooks/")}
    assert expected <= learner, f"_toc.yml must list {sorted(expected - learner)}"
    missing = [e for e in toc_entries() if not build.exists(e)]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


def test_prune_drops_missing_entries_and_empty_parts() -> None:
    toc = {"format": "jb-book", "root": "intro", "parts": [
        {"caption": "A", "chapters": [{"file": "a", "sections": [{"file": "nb/a"}]}, {"file": "b"}]},
        {"caption": "B", "chapters": [{"file": "gone"}]}]}
    pruned = build.prune(toc, {"nb/a", "gone"})
    assert pruned == {"format": "jb-book", "root": "intro",
                      "parts": [{"caption": "A", "chapters": [{"file": "a"}, {"file": "b"}]}]}
    assert build.toc_files(pruned) == ["intro", "a", "b"]


# ---------------------------------------------------------------- launchable notebooks

def test_every_experiment_page_is_launchable() -> None:
    launchable = launch.launchable_pages(toc_entries())
    experiments = [e for e in launch.executed_pages(toc_entries()) if e.startswith("book/experiments/")]
    assert len(experiments) >= 5 and set(experiments) <= set(launchable), (experiments, launchable)


@pytest.mark.parametrize("page", launch.launchable_pages(
    build.toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8")))))
def test_launchable_notebook_is_committed_and_current(page: str) -> None:
    path = ROOT / f"{page}.ipynb"
    want = launch.notebook_text(page, repository_url())
    assert path.is_file() and path.read_text(encoding="utf-8") == want, (
        f"{page}.ipynb is missing or older than {page}.md: run `make book` (book/build.py rewrites it) and commit it")
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", f"{page}.ipynb"], cwd=ROOT,
                             capture_output=True, text=True)
    assert tracked.returncode == 0, f"{page}.ipynb is not committed, so its Colab and Binder buttons lead nowhere"
    nb = nbformat.reads(want, as_version=4)
    setup = nb.cells[1].source
    assert f'REPO = "{repository_url()}"' in setup and 'f"git+{REPO}"' in setup
    page_code = [c.source for c in nb.cells[2:] if c.cell_type == "code"]
    assert page_code and all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
    assert page_code[-1].strip() in (ROOT / f"{page}.md").read_text(encoding="utf-8")


def test_launch_notebook_is_written_only_when_its_page_changed(tmp_path: Path) -> None:
    page = tmp_path / "book" / "experiments" / "demo.md"
    page.parent.mkdir(parents=True)
    page.write_text("---\nkernelspec:\n  name: python3\n  display_name: Python 3\n---\n# Demo\n\n"
                    "```{code-cell} ipython3\nprint(1 + 1)\n```\n", encoding="utf-8")
    (tmp_path / "book" / "plain.md").write_text("# Not executed\n", encoding="utf-8")
    entries = ["book/experiments/demo", "book/plain"]
    assert launch.launchable_pages(entries, tmp_path) == ["book/experiments/demo"]
    first = launch.write_notebooks(entries, "https://github.com/o/r", tmp_path)
    assert first == [tmp_path / "book" / "experiments" / "demo.ipynb"]
    assert launch.write_notebooks(entries, "https://github.com/o/r", tmp_path) == []
    cells = nbformat.read(first[0], as_version=4).cells
    assert [c.cell_type for c in cells] == ["markdown", "code", "markdown", "code"]
    assert cells[-1].source == "print(1 + 1)"


# ---------------------------------------------------------------- assignment points

def test_points_are_the_gradebooks() -> None:
    """The chapter pages read the released notebooks; their points are the nbgrader sources'."""
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        graded = [c.metadata["nbgrader"]["points"] for c in cells if c.metadata.get("nbgrader", {}).get("grade")]
        assert gpipe_book.assignment_points(path.parent.name, ROOT) == sum(graded) > 0
        assert gpipe_book.assignment_points(path.parent.name, ROOT, tree="solutions") == sum(graded)
    with pytest.raises(FileNotFoundError, match="no notebook in notebooks/99_nothing"):
        gpipe_book.assignment_points("99_nothing", ROOT)


# ---------------------------------------------------------------- the explorer's numbers

# The (K, M) the tests below read. An entry is simulated under every cost preset, and the whole grid (K = 1..8,
# M = 1..32, every built-in) takes minutes on two busy cores; the book build computes all of it. Here only these
# are simulated; every other cell is still built, so explorer_data() still names each K and M a builder refuses.
SIMULATED = {(K, M) for K in (1, 2, 3, 4, 8) for M in (1, 2, 8, 32)} | {(4, 4), (3, 7)}


@pytest.fixture(scope="module")
def data() -> Iterator[dict]:
    simulated = explorer_data.schedule_entry

    def entry(builtin: object, K: int, M: int) -> dict:
        if (K, M) in SIMULATED:
            return simulated(builtin, K, M)
        builtin.build(M, K), builtin.placement(K)  # raises where the real entry would be refused
        return {"not simulated by these tests": True}

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(explorer_data, "schedule_entry", entry)
        yield explorer_data.explorer_data()


def test_explorer_offers_every_builtin_schedule_for_every_K_and_M(data: dict) -> None:
    assert set(data["schedules"]) == set(BUILTINS)
    for name, schedule in data["schedules"].items():
        entries = schedule["entries"]
        assert set(entries) == {f"{K},{M}" for K in range(1, data["maxK"] + 1) for M in range(1, data["maxM"] + 1)}
        for key, entry in entries.items():
            if "why" in entry:  # only where the builder itself refuses that K and M
                K, M = map(int, key.split(","))
                with pytest.raises(ValueError):
                    BUILTINS[name].build(M, K)


def _costs(preset: dict, V: int) -> Costs:
    return Costs(forward=preset["F"] / V, backward=preset["B"] / V, input_grad=preset["I"] / V,
                 weight_grad=preset["W"] / V)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_explorer_timelines_and_memory_are_the_simulators(data: dict, name: str) -> None:
    unit, builtin = data["unit"], BUILTINS[name]
    for K in (1, 2, 3, 4, 8):
        for M in (1, 2, 8, 32):
            entry = data["schedules"][name]["entries"][f"{K},{M}"]
            if "why" in entry:
                continue
            table, placement, V = builtin.build(M, K), builtin.placement(K), builtin.virtual
            orders = [list(flatten([o])) for o in device_orders(table, placement)]  # an overlap: F, then B
            assert entry["order"] == [" ".join(f"{a.kind}{a.microbatch}:{a.stage}" for a in o) for o in orders]
            assert entry["bubble_formula"] == pytest.approx(bubble_fraction(M, K), abs=1e-6)
            for c, preset in enumerate(data["costs"]):
                trace = simulate(table, K, _costs(preset, V), placement=placement)
                start = {(e.stage, e.microbatch, e.kind): e.start for e in trace.events}
                starts = entry["start"][c]
                starts = entry["start"][starts] if isinstance(starts, int) else starts
                for d, order in enumerate(orders):
                    assert [s / unit for s in starts[d]] == pytest.approx(
                        [start[a.stage, a.microbatch, a.kind] for a in order])
                assert entry["length"][c] / unit == pytest.approx(max(e.end for e in trace.events))
                assert entry["bubble"][c] == pytest.approx(trace.bubble(), abs=1e-6)
                peak = peak_memory(table, K, costs=_costs(preset, V), placement=placement)
                assert entry["memory"][c] == pytest.approx([p / V for p in peak], abs=1e-3)


def test_explorer_unit_costs_give_the_papers_ticks(data: dict) -> None:
    """Under the first preset (backward = forward) GPipe's timeline is its table: 2(M+K-1) ticks."""
    unit = data["unit"]
    assert data["costs"][0]["F"] == data["costs"][0]["B"] == 1
    for K, M in ((4, 4), (8, 32), (3, 7)):
        entry = data["schedules"]["gpipe"]["entries"][f"{K},{M}"]
        assert entry["length"][0] / unit == 2 * (M + K - 1)
        assert entry["bubble"][0] == pytest.approx(bubble_fraction(M, K), abs=1e-6)
        table = BUILTINS["gpipe"].build(M, K)
        where = {a: t for t, tick in enumerate(table) for a in tick}
        for d, order in enumerate(device_orders(table, list(range(K)))):
            assert [s / unit for s in entry["start"][0][d]] == [where[a] for a in order]


def test_explorer_memory_differs_by_schedule(data: dict) -> None:
    """GPipe holds every micro-batch, 1F1B K-d on device d, ZB-H1 K on every device (zoo's closed forms)."""
    for K in (2, 4, 8):
        for M in (8, 32):
            entries = {name: data["schedules"][name]["entries"][f"{K},{M}"] for name in ("gpipe", "1f1b", "zb-h1")}
            for c in range(len(data["costs"])):
                assert entries["gpipe"]["memory"][c] == [M] * K
                assert entries["1f1b"]["memory"][c] == [min(K - d, M) for d in range(K)]
                assert entries["zb-h1"]["memory"][c] == [K] * K


@pytest.mark.parametrize("name", ["1f1b", "zbv", "dualpipev", "zb-h2"])
def test_explorer_link_presets_are_the_simulators_with_a_link(data: dict, name: str) -> None:
    """Preset link x len(costs) + cost: the same costs with each hop between devices a quarter forward, beside
    the compute or blocking; never shorter than without the link, and the memory (set by the order) unchanged."""
    from gpipe_core.sim.comm import Comm

    unit, builtin, costs = data["unit"], BUILTINS[name], data["costs"]
    assert len(data["comms"]) == 3 and "free" in data["comms"][0]
    for K, M in ((2, 8), (4, 4), (8, 32)):
        entry = data["schedules"][name]["entries"][f"{K},{M}"]
        if "why" in entry:
            continue
        table, placement, V = builtin.build(M, K), builtin.placement(K), builtin.virtual
        orders = [list(flatten([o])) for o in device_orders(table, placement)]
        for link, comm in ((1, Comm(latency=0.25)), (2, Comm(latency=0.25, overlap=False))):
            for c, preset in enumerate(costs):
                at = link * len(costs) + c
                trace = simulate(table, K, dataclasses.replace(_costs(preset, V), comm=comm), placement=placement)
                start = {(e.stage, e.microbatch, e.kind): e.start for e in trace.events}
                starts = entry["start"][at]
                starts = entry["start"][starts] if isinstance(starts, int) else starts
                for d, order in enumerate(orders):
                    assert [s / unit for s in starts[d]] == [start[a.stage, a.microbatch, a.kind] for a in order]
                assert entry["length"][at] / unit == max(e.end for e in trace.events)
                assert entry["length"][at] >= entry["length"][c] and entry["memory"][at] == entry["memory"][c]
