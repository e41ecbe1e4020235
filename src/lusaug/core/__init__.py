"""The base every other package stands on: the typed config (``config/``), the error every stage
reports (``errors``), atomic writes and hashing (``utils``), Markdown/HTML tables (``markdown``),
the MLflow session every run shares (``mlflow_store``) and the named profiles (``profiles``)."""
