"""The MLflow Model Registry: selection, registration, promotion with gates, audit history.

MLflow 3 deprecated registry *stages*; lusaug uses **aliases** named after them:
``candidate`` (set by the ``register`` stage) -> ``staging`` -> ``production``.
Each concern has its own module:

- :mod:`~lusaug.tracking.selection`: the validation winner of a runs file.
- :mod:`~lusaug.tracking.card`: the model card (the version's description).
- :mod:`~lusaug.tracking.registration`: a model URI -> a new version with tags, card and alias.
- :mod:`~lusaug.tracking.promotion`: alias order, gates, promote, rollback.
- :mod:`~lusaug.tracking.history`: the append-only audit history (one model tag per entry).
- :mod:`~lusaug.tracking.lock` and :mod:`~lusaug.tracking.moves`: the registry lock and the
  crash-safe alias move (intent first, alias move as the commit point, repair on next command).
- :mod:`~lusaug.tracking.versions`: lookups, the version table, the export stage's tags.

The ``register`` and ``export`` stages (:mod:`lusaug.stages.register`,
:mod:`lusaug.stages.export`) compose these with the ONNX export; tracking URI and run tags live
in :mod:`lusaug.core.mlflow_store`.
"""
