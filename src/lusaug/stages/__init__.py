"""One module per ``dvc.yaml`` stage, named after it: ``dvc.yaml`` -> ``pipelines/<stage>.py`` (the
argv shell) -> ``lusaug.stages.<stage>``.

Each module has a frozen ``<Stage>Paths`` dataclass (the files the stage reads and writes, as
``dvc.yaml`` names them) and ``run(paths, <the config sections it reads>, *, <options>)``, which
composes the concern packages (``data``, ``validation``, ``models``, ``generators``, ``tuning``,
``tracking``, ``export``) and returns a small summary (what it wrote, for the script to print and
for tests). Import the stage's own module: this package imports none of them, so a stage depends
only on the code it runs.
"""
