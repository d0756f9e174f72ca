"""Publishing the desktop's TUF update repository (metadata and builds) from a directory.

The directory is what `packaging/tuf_publish.py` writes (`metadata/`, `targets/`).
Everything here is signed by TUF keys the server never holds, so the routes need
no authentication and the server cannot forge an update: a workstation checks
every file against the signed metadata (see `desktop/updates.py`).
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

_METADATA_NAME = re.compile(r"^(\d+\.)?(root|timestamp|snapshot|targets)\.json$")


def updates_router(directory: Path) -> APIRouter:
    """Routes under `/updates` serving `directory`."""
    router = APIRouter(prefix="/updates", tags=["updates"])
    metadata_dir = directory.resolve() / "metadata"
    targets_dir = directory.resolve() / "targets"

    @router.get("/metadata/{name}")
    def metadata(name: str) -> FileResponse:
        path = metadata_dir / name
        if not _METADATA_NAME.match(name) or not path.is_file():
            raise HTTPException(status_code=404, detail="no such update metadata")
        # timestamp.json and root.json change in place; versioned files never do.
        versioned = name[0].isdigit()
        cache = "public, max-age=31536000, immutable" if versioned else "no-cache"
        return FileResponse(path, media_type="application/json", headers={"Cache-Control": cache})

    @router.get("/targets/{target_path:path}")
    def target(target_path: str) -> FileResponse:
        path = (targets_dir / target_path).resolve()
        if not path.is_relative_to(targets_dir) or not path.is_file():
            raise HTTPException(status_code=404, detail="no such update file")
        # Target names carry their hash (consistent snapshots): they never change.
        return FileResponse(
            path,
            media_type="application/octet-stream",
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    return router
