"""Raw data (phantom, import), frame extraction and patient-grouped splits."""
