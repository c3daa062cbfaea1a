"""Schedules as data: the table's cells (``actions``), the classic two and the walker (``schedule``), the
checks every table passes (``validation``), and the schedules after GPipe (``zoo`` and the builders it lists).

Nothing here runs torch: a table is checked, drawn and simulated without a model. Kept free of imports so that
loading one module of it loads no other.
"""
