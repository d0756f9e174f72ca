"""The sync server: the authoritative FHIR R4 record on PostgreSQL."""
