"""Great Expectations suites over the frame manifest and its splits (the `validate` stage)."""

from lusaug.validation.suite import ValidationReport, run_validation, validate_splits

__all__ = ["ValidationReport", "run_validation", "validate_splits"]
