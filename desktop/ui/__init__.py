"""The clinician GUI (Qt Widgets). Widgets reach the facade only through `ops`."""
