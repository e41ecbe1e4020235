"""The final model: the setting chosen on pooled validation, refit on every patient."""
