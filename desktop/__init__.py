"""The clinician workstation: headless core (store, sync, services) and the Qt GUI (ui, app)."""

#: The running build's version (kept equal to pyproject's by a test); updates compare to it.
__version__ = "0.1.0"
