"""Great Expectations suites over every fold's split and its frames (the `validate` stage)."""

from lusaug.validation.suite import (
    Sections,
    ValidationReport,
    run_validation,
    validate_folds,
    validate_splits,
)

__all__ = ["Sections", "ValidationReport", "run_validation", "validate_folds", "validate_splits"]
