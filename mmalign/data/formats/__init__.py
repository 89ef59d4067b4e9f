"""Readers and writers of public preference-data formats, and the ``mmalign data`` commands.

``registry.FORMATS`` maps each name to its reader, writer and detector: ``mmalign`` (``own.py``), ``trl``,
``llamafactory``, ``swift``, ``verl`` (RL prompts, ``verl.PromptRecord``), ``rlaif_v``, ``vlfeedback``, ``mmrlhf``,
``llava_rlhf``, ``rlhfv`` and ``povid``, one module each, whose docstring gives the schema it follows, where the
schema comes from and what is not carried. Shared parts: ``images.py`` (image references, lazy URLs), ``rows.py``
(JSONL/JSON/parquet rows), ``messages.py`` (prompt shapes and ``<image>`` placeholders), ``pairs.py`` (row-by-row
reading and writing, extra columns), ``show.py`` (the HTML page) and ``commands.py`` (the CLI).
"""
