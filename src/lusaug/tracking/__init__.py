"""The MLflow Model Registry: selection, registration, promotion with gates, audit history.

Tracking URI and run tags live in :mod:`lusaug.core.mlflow_store`; :mod:`lusaug.tracking.registry`
re-exports the public registry names.
"""
