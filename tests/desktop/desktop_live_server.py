"""A real sync server for the desktop tests: PostgreSQL, migrations, uvicorn on 127.0.0.1.

Every request signs in with a bearer token (no test override of the request
context). Users are created through the identity service, as `ehr-server
create-user` does; charts are loaded through the server's one FHIR repository.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sync_server.app import create_app
from sync_server.config import Settings
from sync_server.db.engine import make_engine, migrate
from sync_server.services import users
from sync_server.services.bundles import process_bundle
from sync_server.services.context import RequestContext
from sync_server.services.fhir_repository import FhirRepository
from sync_server.services.system_access import SystemAudit, SystemGuard

SERVER_PASSWORD = "Tr0ub4dor&3-horse-staple"
LOCATION_ID = "loc-main"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


@dataclass
class ClinicUser:
    username: str
    password: str
    totp_secret: str
    last_step: int = field(default=0)

    def next_code(self) -> str:
        """A TOTP code not used before (a code is single-use; the server allows one step
        of drift either way). The previous step is never used: it may expire in transit."""
        while True:
            now = int(time.time() // 30)
            for step in (now, now + 1):
                if step > self.last_step:
                    self.last_step = step
                    return pyotp.TOTP(self.totp_secret).at(step * 30)
            time.sleep(1)


@dataclass
class ClinicServer:
    url: str
    app: FastAPI
    engine: Engine

    def add_user(self, username: str, roles: list[str]) -> ClinicUser:
        rt = self.app.state.identity
        with Session(self.engine) as session:
            _, enrolment = users.create_user(
                session, rt.keys, rt.security, username=username, password=SERVER_PASSWORD,
                roles=roles, location_ids=[LOCATION_ID],
            )  # fmt: skip
            session.commit()
        return ClinicUser(username, SERVER_PASSWORD, enrolment.secret)

    def load_bundles(self, paths: list[Path]) -> list[dict[str, Any]]:
        """Import Synthea bundles, link each patient to our location with an Encounter.

        Returns the Patient resources with the ids the server gave them.
        """
        patients = []
        with Session(self.engine) as session:
            repo = FhirRepository(
                session, RequestContext.for_system("tests"), SystemGuard(), SystemAudit()
            )
            if not repo.existing_keys([("Location", LOCATION_ID)]):
                location = {"resourceType": "Location", "id": LOCATION_ID, "name": "Main clinic"}
                process_bundle(repo, _put_bundle([location]))
            for path in paths:
                bundle = json.loads(path.read_text())
                answer = process_bundle(repo, bundle)
                index, entry = next(
                    (i, e)
                    for i, e in enumerate(bundle["entry"])
                    if e["resource"]["resourceType"] == "Patient"
                )
                location = answer["entry"][index]["response"]["location"]
                patient = {**entry["resource"], "id": location.split("/")[1]}
                patients.append(patient)
                encounter = {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"system": ACT_CODE, "code": "AMB"},
                    "subject": {"reference": f"Patient/{patient['id']}"},
                    "location": [{"location": {"reference": f"Location/{LOCATION_ID}"}}],
                }  # fmt: skip
                process_bundle(repo, _put_bundle([encounter]))
            session.commit()
        return patients

    def set_password(self, username: str, password: str) -> None:
        from sync_server.db.identity_models import UserRow
        from sync_server.services.passwords import hash_password

        with Session(self.engine) as session:
            user = session.query(UserRow).filter_by(username=username).one()
            user.password_hash = hash_password(password)
            session.commit()

    def disable(self, username: str) -> None:
        with Session(self.engine) as session:
            users.update_user(session, username, disabled=True)
            session.commit()


def _put_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    entries = []
    for res in resources:
        if "id" in res:
            request = {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}
        else:
            request = {"method": "POST", "url": res["resourceType"]}
        entries.append({"resource": res, "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def clinic_server(database_url: str, data_dir: Path) -> Iterator[ClinicServer]:
    engine = make_engine(database_url)
    migrate(engine)
    app = create_app(Settings(database_url=None, data_dir=data_dir, demo_mode=False), engine)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("live server did not start")
        time.sleep(0.02)
    try:
        yield ClinicServer(f"http://127.0.0.1:{port}", app, engine)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()
