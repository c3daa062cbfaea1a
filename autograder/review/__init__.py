"""The review's parts, one idea each; :mod:`autograder.review.run` puts them together for the grader.

``findings`` (a flag or a hold, with its evidence), ``definitions`` (what the
probe loads, read as it loads it), ``capabilities`` (holds), ``tokens`` and
``fingerprints`` (normalised, winnowed code), ``base`` (what the course hands
out, and the engine's own code), ``similarity`` (copies of the engine and of
classmates), ``machinery`` (grading machinery touched anywhere).
"""
