"""Every pipeline a notebook builds says where it runs.

On a Colab-style GPU session ``GPipe(...)`` without ``devices=`` lands on the GPU
while a test's reference stays on the CPU, and a correct learner would fail a
visible test. So every ``GPipe(`` call in the course's notebooks states its
devices (``"cpu"`` where a CPU reference is compared, or the notebook's ``DEVICE``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from autograder import course_root

NOTEBOOKS = sorted(p for folder in ("solutions", "notebooks") for p in (course_root() / folder).glob("*/*.ipynb"))


def gpipe_calls_without_devices(path: Path) -> list[str]:
    from IPython.core.inputtransformer2 import TransformerManager

    missing = []
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "code":
            continue
        tree = ast.parse(TransformerManager().transform_cell(cell.source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (getattr(node.func, "id", None) == "GPipe"
                                               or getattr(node.func, "attr", None) == "GPipe"):
                if not any(k.arg == "devices" for k in node.keywords):
                    missing.append(f"cell {index}, line {node.lineno}: {ast.unparse(node)[:90]}")
    return missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_every_gpipe_states_its_devices(path: Path) -> None:
    missing = gpipe_calls_without_devices(path)
    assert not missing, f"{path}: GPipe(...) without devices= (add devices=\"cpu\" or devices=DEVICE): {missing}"
