"""Great Expectations suites over every fold's split and its frames (the `validate` stage's
mechanism; :mod:`lusaug.stages.validate` runs them)."""

from lusaug.validation.suite import (
    Sections,
    ValidationReport,
    documented_fallbacks,
    read_folds,
    validate_folds,
    validate_splits,
)

__all__ = [
    "Sections",
    "ValidationReport",
    "documented_fallbacks",
    "read_folds",
    "validate_folds",
    "validate_splits",
]
