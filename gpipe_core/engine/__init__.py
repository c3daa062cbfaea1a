"""The engine: what runs one pipelined step on real workers and proves it equals the plain model.

The partitioner cuts the model (``partition``), the stages hold the pieces
(``stage``, ``checkpoint``, ``rng``, ``batchnorm``, ``split_backward``), the
runtime walks a table on workers (``runtime``, ``step``, ``workers``,
``mailbox``), and ``pipe`` ties them into :class:`~gpipe_core.GPipe`;
``reference`` is the sequential model every step must equal, ``trace`` what
really happened. Kept free of imports so that loading one module of it loads
no other.
"""
