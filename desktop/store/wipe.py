"""Remote wipe: destroy the profile's charts and keys when the server revokes it.

Crypto-erase: the device secret (keychain), every keyslot and the database key
envelope are destroyed, so the database key cannot be recovered even from
disk blocks an SSD keeps after deletion; the database files and quarantined
copies are then deleted too. The caller closes the database first.
"""

from __future__ import annotations

import shutil

from desktop.store import device_secret
from desktop.store.profile import ProfileLayout


def wipe_profile(layout: ProfileLayout, profile_id: str) -> None:
    """Destroy keys, database and quarantine; the profile directory itself stays."""
    device_secret.delete(profile_id)
    if layout.keys_dir.exists():
        shutil.rmtree(layout.keys_dir)
    for path in layout.db_files():
        path.unlink()
    if layout.quarantine_dir.exists():
        shutil.rmtree(layout.quarantine_dir)
