"""Predicting a step without running it: the paper's formulas (``theory``), a table timed under a cost model
(``simulate``, ``costs``, ``comm``), the simulator held to the papers and to the engine (``papers``, ``waits``),
and traces a person can open (``perfetto``).

Kept free of imports so that loading one module of it loads no other.
"""
