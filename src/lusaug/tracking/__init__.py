"""MLflow helpers: tracking URI, experiments, run tags, registry and promotion."""
