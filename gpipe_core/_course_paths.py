"""The flat module paths learners' notebooks import (``gpipe_core.zoo``), kept working after the package was grouped.

Why: gpipe_core's modules live in sub-packages that show its parts
(``engine/``, ``schedules/``, ``sim/``, ``workloads/``, ``course/``), but the
solution and learner notebooks, and the copies learners hold mid-term,
import the flat paths of before (``from gpipe_core.zoo import ...``,
``import gpipe_core.theory as theory``). One table and one import finder keep
those paths, not a file per module, and nothing but notebooks should use them
(the repository's own code imports the new paths).

An old path is *the same module object* as its new one
(``gpipe_core.zoo is gpipe_core.schedules.zoo``): no copy, no re-export. So
the grading view stays sound: the finder imports the new path by name inside
the package it was loaded from, which in the sandbox is the view's copy, and
a function with no body there has none whichever path reaches it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

PACKAGE = __name__.rpartition(".")[0]  # "gpipe_core": the package this file belongs to, the view's copy included

MOVED: dict[str, str] = {  # old module name -> where it lives now, relative to the package
    "batchnorm": "engine.batchnorm", "checkpoint": "engine.checkpoint", "common": "engine.common",
    "devices": "engine.devices", "mailbox": "engine.mailbox", "memory": "engine.memory",
    "microbatch": "engine.microbatch", "partition": "engine.partition", "pipe": "engine.pipe",
    "reference": "engine.reference", "rng": "engine.rng", "runtime": "engine.runtime",
    "split_backward": "engine.split_backward", "stage": "engine.stage", "step": "engine.step",
    "tensors": "engine.tensors", "trace": "engine.trace", "two_way": "engine.two_way", "workers": "engine.workers",
    "actions": "schedules.actions", "bidirectional": "schedules.bidirectional",
    "breadth_first": "schedules.breadth_first", "dualpipe": "schedules.dualpipe", "schedule": "schedules.schedule",
    "tick_fill": "schedules.tick_fill", "validation": "schedules.validation", "vshape": "schedules.vshape",
    "zoo": "schedules.zoo",
    "comm": "sim.comm", "costs": "sim.costs", "papers": "sim.papers", "perfetto": "sim.perfetto",
    "simulate": "sim.simulate", "theory": "sim.theory", "waits": "sim.waits",
    "gpt": "workloads.gpt", "models": "workloads.models", "tokenizer": "workloads.tokenizer",
    "training": "workloads.training",
    "experiments": "course.experiments", "puzzle_ladder": "course.puzzle_ladder",
    "puzzle_targets": "course.puzzle_targets", "puzzles": "course.puzzles", "readings": "course.readings",
    "report": "course.report", "widgets": "course.widgets",
}


def resolve(old: str) -> ModuleType:
    """The module an old flat name (``"zoo"``) now is, imported from this package."""
    return importlib.import_module(f"{PACKAGE}.{MOVED[old]}")


class OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``gpipe_core.<old name>`` and hands out the module at its new path, the same object."""

    package = PACKAGE  # how install() recognises the finder an earlier import of the package left

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        parent, _, name = fullname.rpartition(".")
        if parent != PACKAGE or name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = resolve(spec.name.rpartition(".")[2])
        spec.loader_state = module.__spec__  # the import system stamps the alias's spec on it: exec_module undoes it
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = module.__spec__.loader_state  # already executed at its new path; keep its own spec


def install() -> None:
    """Put one finder for this package first on ``sys.meta_path`` (replacing one an earlier import left)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not (type(f).__name__ == "OldPaths" and f.package == PACKAGE)]
    sys.meta_path.insert(0, OldPaths())
