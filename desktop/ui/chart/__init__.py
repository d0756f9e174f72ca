"""A patient's chart: one tab per patient, the banner always above it."""
