"""The clinician workstation: headless core (store, sync, services) and the Qt GUI (ui, app)."""
