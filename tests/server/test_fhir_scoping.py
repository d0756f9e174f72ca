"""The repository filters searches and history by the caller's care sites (real guard, real rows).

A physician at one site sees that site's patients and their records, every
non-patient resource (Practitioner, Location ...), and a break-the-glass
patient; an Appointment naming another Location makes the patient visible there.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sync_server.cli import system_repository
from sync_server.db.engine import make_engine, make_sessionmaker, migrate
from sync_server.services.access_guard import ScopedAccessGuard
from sync_server.services.context import RequestContext
from sync_server.services.demo_seed import DemoClinic, seed_demo
from sync_server.services.fhir_repository import FhirRepository
from sync_server.services.system_access import SystemAudit


@pytest.fixture(scope="module")
def clinic(create_database) -> Iterator[tuple[Engine, DemoClinic]]:
    engine = make_engine(create_database())
    migrate(engine)
    with make_sessionmaker(engine)() as session:
        seeded = seed_demo(
            system_repository(session, "t"), seed=11, patients=6, today=date(2026, 1, 5)
        )
        session.commit()
    yield engine, seeded
    engine.dispose()


def _physician_repo(session: Session, location: str, **extra) -> FhirRepository:
    ctx = RequestContext(
        username="dr", roles=frozenset({"physician"}), location_ids=frozenset({location}), **extra
    )
    # the audit of these reads is the audit trail's concern; here only what is visible counts
    return FhirRepository(session, ctx, ScopedAccessGuard(), SystemAudit())


def _ids(result) -> set[str]:
    return {m.id for m in result.matches}


def test_search_sees_only_patients_cared_for_at_my_sites(clinic) -> None:
    engine, seeded = clinic
    site = seeded.location_ids[0]
    mine = set(seeded.patient_ids[0::3])  # patients are spread over the 3 sites in turn
    with make_sessionmaker(engine)() as session:
        repo = _physician_repo(session, site)
        assert _ids(repo.search("Patient", [("_count", "100")])) == mine
        observations = repo.search("Observation", [("_count", "1000")])
        assert {m.patient_id for m in observations.matches} == mine
        assert len(repo.search("Location", []).matches) == 3  # non-patient resources: all
        history, _ = repo.history("Patient", None, count=100)
        assert {v.id for v in history} == mine


def test_break_glass_and_a_new_appointment_widen_the_view(clinic) -> None:
    engine, seeded = clinic
    site, other = seeded.location_ids[0], seeded.patient_ids[1]
    with make_sessionmaker(engine)() as session:
        opened = _physician_repo(session, site, break_glass={other: "unconscious in ER"})
        assert other in _ids(opened.search("Patient", [("_count", "100")]))

    with make_sessionmaker(engine)() as session:
        system_repository(session, "t").create(
            {
                "resourceType": "Appointment",
                "status": "booked",
                "participant": [
                    {"actor": {"reference": f"Patient/{other}"}, "status": "accepted"},
                    {"actor": {"reference": f"Location/{site}"}, "status": "accepted"},
                ],
            }
        )
        session.commit()
        assert other in _ids(_physician_repo(session, site).search("Patient", [("_count", "100")]))
