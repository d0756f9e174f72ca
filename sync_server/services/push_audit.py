"""The audit trail of a sync push: one event per patient, action and outcome of a batch.

A batch of 500 changes audited one event per write spent most of its time on
audit rows and on sealing them into the hash chain. DESIGN.md's who, what,
when, from which workstation and with what outcome are all kept: each event
names its changes (change id, resource, and the version written or why it
was refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared_models.sync_messages import PushChange
from sync_server.services.fhir_repository import FhirRepository, StoredResource


@dataclass
class PushAudit:
    """The audit trail of one push: an event per (outcome, action, patient), naming the changes.

    Successes are recorded in the push's transaction (durable with the writes);
    failures and denials in their own, as every failure is.
    """

    client_id: str
    _events: dict[tuple[str, str, str | None], list[tuple[PushChange, str]]] = field(
        default_factory=dict, init=False
    )

    def written(self, change: PushChange, stored: StoredResource, created: bool) -> None:
        action = "delete" if stored.deleted else ("create" if created else "update")
        self._add("success", action, stored.patient_id, change, stored.location)

    def refused(self, change: PushChange, patient_id: str | None, why: str, denied: bool) -> None:
        self._add("denied" if denied else "failure", "sync-push", patient_id, change, why)

    def _add(
        self, outcome: str, action: str, patient: str | None, change: PushChange, note: str
    ) -> None:
        self._events.setdefault((outcome, action, patient), []).append((change, note))

    def record(self, repo: FhirRepository) -> None:
        for (outcome, action, patient), items in self._events.items():
            one = items[0][0] if len(items) == 1 else None
            repo.audit.record(
                repo.session, repo.ctx, action=action, outcome=outcome,
                resource_type=one.resourceType if one else None,
                resource_id=one.id if one else None,
                patient_ids=[patient] if patient else None,
                detail={
                    "client_id": self.client_id,
                    "changes": [
                        {"change_id": c.change_id, "resource": f"{c.resourceType}/{c.id}",
                         "outcome": note}
                        for c, note in items
                    ],
                },
            )  # fmt: skip
