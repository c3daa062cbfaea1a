"""The sandbox: run a learner's code in bubblewrap under limits, and nothing about grading.

Everything here is about isolation and limits, never about what a score
means, so it imports only its own modules and the top-level paths:
``launch`` (the bubblewrap command and its mounts), ``helper`` (the
standard-library launcher that sets the limits and execs bubblewrap),
``supervise`` (watch the process tree, stop it at its limits),
``treelimits`` (a cgroup for the whole tree), ``limits`` (the limits and
their per-run overrides), ``execute`` and ``nbrunner`` (a notebook run again
for its feedback page).
"""
