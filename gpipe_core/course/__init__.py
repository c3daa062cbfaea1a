"""What the course and its notebooks build on the engine: timed experiments and the readings beside them
(``experiments``, ``readings``, ``report``), the K/M explorer (``widgets``), and assignment 07's schedule puzzles
(``puzzles``, ``puzzle_ladder``, ``puzzle_targets``).

Kept free of imports so that loading one module of it loads no other.
"""
