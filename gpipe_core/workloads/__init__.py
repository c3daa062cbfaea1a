"""What the pipeline trains: the course's models and task (``models``), a small GPT on shipped text (``gpt``,
``tokenizer``, ``data/``), and the training loop ``gpipe train`` runs (``training``).

Kept free of imports so that loading one module of it loads no other.
"""
