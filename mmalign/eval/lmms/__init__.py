"""lmms-eval integration (docs/evaluation.md):

* ``model``: the model adapter ``MMAlignLMM`` (``lmms-eval --model mmalign``); importing it needs lmms-eval and
  raises a clear ImportError without it. ``manifest`` is its ``lmms_eval.models`` entry point.
* ``tasks``: ``mmalign lmms-tasks`` writes the lab tasks as an lmms-eval task folder.
* ``hooks``: the prompt, image and scoring functions those task files call (plain Python, no lmms-eval needed).
"""
