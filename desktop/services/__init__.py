"""The application layer the GUI and the headless commands share (no Qt)."""
