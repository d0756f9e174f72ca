"""The encrypted local chart cache (SQLCipher 4), its keys and the profile on disk. No Qt."""
