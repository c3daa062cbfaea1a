"""The judge: scores from plain data, computed outside the learner's process.

No test outcome may depend on a check that runs where the learner's code ran
(a learner can patch ``torch.equal``, install IPython hooks or return an object
equal to everything). So grading is split in two:

1. the **probe** (``probe.py``) runs in a fresh sandboxed process holding only
   the learner's definitions (functions and classes, extracted by AST from the
   solution cells, see ``extract.py``) and a *grading view* of gpipe_core in
   which the references of this assignment have no body (``view.py``). It
   calls the learner's code on inputs the judge sends and writes back plain
   data only: numbers, strings, lists, exact ``torch.Tensor`` values as bytes,
   errors as type name and message;
2. the **judge** (this package, trusted, never imports learner code) computes
   the references itself with the real gpipe_core on the same inputs, compares,
   and gives each graded cell (``grade_id``) its points or 0 with messages that
   name the cause.

The interface with the grading cycle (``autograder/cycle/probe_runs.py`` runs the probe)::

    result = grade_submission("02_partitioner", Path("partitioner.ipynb"), run_probe, seed=1234)
    result.scores["test_partition_optimal"]     # 8.0 or 0.0
    result.messages["test_partition_optimal"]   # ["costs [...], K=3: your balance ... the best reaches ..."]
    result.flags                                # ["dropped from the probe: a top-level statement ..."]

``run_probe(module_path, request) -> response`` is the sandbox's: it copies
the probe beside the module (``install_probe``), runs ``python probe.py
module_path`` in a sandbox whose ``PYTHONPATH`` starts
with ``build_view(assignment, dest)``, writes ``json.dumps(request)`` to its
stdin and returns ``read_probe_output(stdout, returncode, timed_out, stderr,
key=request["key"])``. The probe's harness runs each task in a child of its
own (``probe.py``); the request carries a key that every line it writes
repeats, so lines written on its behalf are recognised and hold the
submission.
``run_probe_locally`` (``local.py``) does the same without a sandbox (tests,
``--no-sandbox``).

Writing the judge of an assignment
----------------------------------
One file per assignment, ``autograder/judge/<assignment>.py`` (the folder
name of ``solutions/<assignment>/``, digits first is fine), holds all of its
grading facts; nothing else names the assignment (``facts.py`` finds the file
by that name, in ``<course root>/autograder/judge/`` first, then here):

* ``CHECKS = Checks()`` and one function per graded cell (below);
* ``EXERCISES``: each exercise the solution notebook defines, and the engine
  code that would solve it (a ``view.Family``; the shared ones such as
  ``view.FILL_DRAIN`` or ``view.POLICIES`` are defined in ``view.py``). The
  grading view blanks those, their siblings and every private helper on the
  call graph (``view.py``, ``callgraph.py``); ``Family(why=...)`` says why
  nothing in the engine solves an exercise;
* ``KEEP`` (optional): engine code the notebook hands learners as tools,
  which keeps its body in the view, each with why;
* ``LIMITS = Limits(...)`` (``autograder.sandbox.limits``): time and memory for its
  notebook, about ten times the slowest graded cell on 2 cores (the default
  otherwise);
* ``REVIEW = Review(...)`` (optional, ``facts.Review``): what the review flags
  for this assignment only: imports (05: the engine's executor) and grader
  files a learner could paste (07: the puzzle search).

Checks several assignments share live in ``shared_*.py`` modules (the
recomputation policy alone, the assembled pipe), never in another
assignment's judge. A check receives ``ask`` (to queue calls for the probe)
and ``rng`` (a ``random.Random`` seeded per grading run: draw the hidden cases
from it) and returns a ``verify()`` that runs after the probe and raises
``Failed`` (through ``expect``) with a message naming the cause::

    from autograder.judge.base import Checks, expect
    from autograder.judge.view import Family
    from autograder.sandbox.limits import Limits

    CHECKS = Checks()
    EXERCISES = {"partition_by_count": Family(("partition.balance_by_count",))}
    LIMITS = Limits(cell_timeout_s=20, notebook_timeout_s=180)

    @CHECKS("test_partition_by_count")
    def by_count(ask, rng):
        cases = [(10, 4)] + [(L, rng.randint(1, L)) for L in rng.sample(range(1, 40), 8)]
        replies = [ask.call("partition_by_count", L, K) for L, K in cases]   # queued, not run yet

        def verify():
            for (L, K), reply in zip(cases, replies):
                want = balance_by_count(L, K)          # the judge's own reference (real gpipe_core)
                got = reply.value(f"partition_by_count({L}, {K})")   # Failed if it raised or timed out
                expect(got == want, f"{L} layers on K={K} stages: expected {want}, got {got}")
        return verify

The engine's machinery that the probe runs learner code in keeps its body in
every view (``view.ALLOWED``), each with its reason.

``ask.call(name, *args)`` calls the learner's function ``name``;
``ask.task(name, **params)`` runs one of the probe's scenarios (a learner's
policy inside the engine, gradients after a training step: the ``task_*``
functions of ``probe_tasks.py``, shared by every assignment; a new scenario is
the one addition a new assignment may need outside its judge file, since the
probe runs in the sandbox beside copies of its own files and imports no
judge). Arguments and replies are plain data (``probe_codec.encode``): tensors
come back as real ``torch.Tensor`` built by the judge, an int subclass or
numpy integer as a plain ``int``, anything unknown as ``Foreign`` (which
equals nothing). A check with no ``Failed`` earns the cell's points (those of
the nbgrader source notebook); any ``Failed`` scores the cell 0.
"""

from __future__ import annotations

from .base import Checks, Failed, Foreign, expect
from .grade import JudgeResult, RunProbe, grade_submission, judge_module, points
from .probe_io import PROBE_SCRIPT, install_probe, read_probe_output
from .view import build_view

__all__ = [
    "PROBE_SCRIPT", "Checks", "Failed", "Foreign", "JudgeResult", "RunProbe", "build_view",
    "expect", "grade_submission", "install_probe", "judge_module", "points", "read_probe_output",
]
