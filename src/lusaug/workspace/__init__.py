"""The DVC workspace a user works in: ``lusaug repro`` (``dvc repro`` that gives back the outputs
a failing run removed) and DVC plots that render offline.

Modules: :mod:`.outputs` (what every stage output looks like before a run, and putting back
those a failed run removed or half-wrote), :mod:`.repro` (the wrapper around ``dvc repro``),
:mod:`.plots` (the offline HTML template of ``dvc plots show``), :mod:`.commands` (the CLI).
"""
