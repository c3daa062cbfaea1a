"""The grader's own test classes: what it is tried on before it grades a real class.

``fakeclass`` (made-up submissions with known grades, planted mistakes
included), ``hostile`` and ``hostile_two`` (cheating and sabotaging
submissions), ``honest`` with ``honest_*`` (honest learners in many styles),
and ``seed_sweep`` (each planted mistake against many grading seeds). Nothing
in the grading cycle imports from here.
"""
