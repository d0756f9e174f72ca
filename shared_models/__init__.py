"""Pure-Python pieces shared by the desktop and the sync server.

FHIR helpers and validation, sync protocol messages and merge rules. This package
imports neither side, nor Qt, a database driver or an HTTP library.
"""
