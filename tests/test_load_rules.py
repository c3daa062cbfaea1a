"""Nothing learner-written runs while the probe loads a submission's definitions.

The 04 attack that scored 14/14 for no recomputation put a decorator on the
learner's class: it ran as the probe loaded the module and replaced what the
probe measured with. Each way Python runs code while a definition loads is
refused here with the cell and line named, and only the definition that used
it is lost; trusted libraries' decorators and honest code still load. The
last test loads a submission that tries every trick through the real probe and
checks that none of its code ran.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.judge.extract import extract, source_notebook
from autograder.selftest.fakeclass import replace_cell

A = "02_partitioner"
HONEST = ("def partition_by_count(num_layers, K):\n    q, r = divmod(num_layers, K)\n"
          "    return [q + (i < r) for i in range(K)]\n")


def extracted(source: str, assignment: str = A, cell: str = "partition_by_count"):  # noqa: ANN201 - Extracted
    return extract(assignment, replace_cell(source_notebook(assignment), cell, source))


REFUSED = {
    "learner decorator": "def dec(f):\n    return f\n\n@dec\n" + HONEST,
    "learner decorator called": "def dec(*a):\n    return lambda f: f\n\n@dec(1)\n" + HONEST,
    "decorator shadowing a trusted name": "def property(f):\n    return f\n\n@property\n" + HONEST,
    "computed default": HONEST.replace("K):", "K=print('loaded')):"),
    "metaclass": "class Meta(type):\n    pass\n\nclass Policy(metaclass=Meta):\n    pass\n\n" + HONEST,
    "init_subclass": "class Base:\n    def __init_subclass__(cls):\n        print('subclassed')\n\n" + HONEST,
    "class_getitem alias": "class Evil:\n    def helper(self):\n        return 1\n\nAlias = Evil[int]\n" + HONEST,
    "class body statement": "class Policy:\n    print('body')\n\n" + HONEST,
    "class attribute call": "class Policy:\n    x = print('attr')\n\n" + HONEST,
    "enum base": "import enum\n\nclass Kind(enum.Enum):\n    A = 1\n\n" + HONEST,
    "base call": "class Policy(type('B', (), {})):\n    pass\n\n" + HONEST,
}


ON_THE_EXERCISE = {"learner decorator", "learner decorator called", "decorator shadowing a trusted name",
                   "computed default"}  # the trick sits on partition_by_count itself, which is then lost


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_code_that_would_run_on_load_is_refused_with_its_line(name: str) -> None:
    ex = extracted(REFUSED[name])
    assert ex.dropped, f"{name}: nothing refused"
    assert all("cell partition_by_count, line " in d for d in ex.dropped), ex.dropped
    learner_part = ex.source.split("def partition_by_count")[0].split("DEVICE = 'cpu'")[-1]
    assert "print(" not in learner_part and "Evil[" not in learner_part, ex.source
    assert ("partition_by_count" in ex.defined) == (name not in ON_THE_EXERCISE), ex.defined


def test_the_refused_definition_alone_is_lost_and_named() -> None:
    ex = extracted(REFUSED["learner decorator"])
    assert "dec" in ex.defined and "partition_by_count" not in ex.defined
    assert "partition_by_count" in ex.refused and "line 5" in ex.refused["partition_by_count"]
    assert "trusted library" in ex.refused["partition_by_count"]


def test_what_needs_a_refused_definition_while_loading_is_refused_too_and_the_rest_loads() -> None:
    ex = extracted("class Base:\n    def __init_subclass__(cls):\n        pass\n\nclass Child(Base):\n    pass\n\n"
                   "class Box:\n    def __class_getitem__(cls, item):\n        return cls\n\nAlias = Box[int]\n"
                   "Again = Alias\n\n" + HONEST)
    assert {"Base", "Child", "Box", "Alias", "Again"} <= set(ex.refused), ex.refused
    assert "needs Base" in ex.refused["Child"] and "needs Alias" in ex.refused["Again"]
    assert "partition_by_count" in ex.defined


TRUSTED = {
    "functools cache": "import functools\n\n@functools.lru_cache(maxsize=None)\n" + HONEST,
    "imported name": "from functools import cache\n\n@cache\n" + HONEST,
    "torch no_grad": "import torch\n\n@torch.no_grad()\n" + HONEST,
    "property and setter": "class Box:\n    @property\n    def v(self):\n        return 1\n\n    @v.setter\n"
                           "    def v(self, x):\n        pass\n\n    @staticmethod\n    def s():\n        return 2\n\n"
                           + HONEST,
    "dataclass": "from dataclasses import dataclass\n\n@dataclass\nclass P:\n    x: int = 1\n\n" + HONEST,
    "annotations": "def partition_by_count(num_layers: print('x') or int, K: int) -> list[int]:\n"
                   "    q, r = divmod(num_layers, K)\n    return [q + (i < r) for i in range(K)]\n",
}


@pytest.mark.parametrize("name", sorted(TRUSTED))
def test_trusted_decorators_and_honest_code_load(name: str) -> None:
    ex = extracted(TRUSTED[name])
    assert ex.dropped == [] and "partition_by_count" in ex.defined, ex.dropped


def test_annotations_are_never_evaluated() -> None:
    assert extracted(TRUSTED["annotations"]).source.splitlines()[1] == "from __future__ import annotations"


def test_no_load_trick_runs_in_the_real_probe(tmp_path: Path) -> None:
    """Every refused trick writes a marker file if it runs; the probe loads the module and calls it."""
    from autograder.judge.base import Ask
    from autograder.judge.grade import probe
    from autograder.judge.local import run_probe_locally

    marker = tmp_path / "ran"
    tricks = "".join(src.replace(HONEST, "").replace("print(", f"open({str(marker)!r}, 'a').write(")
                     for src in REFUSED.values())
    ex = extracted(tricks + HONEST)
    ask = Ask()
    reply = ask.call("partition_by_count", 10, 4)
    ask.attach(probe(ex, {"assignment": A, "calls": ask.calls}, run_probe_locally))
    assert reply.value() == [3, 3, 2, 2]
    assert not marker.exists(), marker.read_text()
