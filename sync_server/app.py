"""The FastAPI application factory: routers, error handling, limits, state.

Routers are listed here, in one place. The access guard and audit sink every
repository gets live on `app.state` (see `sync_server.api.deps`).
"""

from __future__ import annotations

import gc
import threading

from fastapi import FastAPI
from sqlalchemy import Engine

from shared_models.fhir_validation import warm_validators
from sync_server.api import access_log, admin, auth, fhir, health, scheduling, smart, sync
from sync_server.api.errors import install_error_handlers
from sync_server.api.metrics import install_metrics
from sync_server.api.responses import OrjsonResponse
from sync_server.api.updates import updates_router
from sync_server.config import Settings
from sync_server.db.engine import make_engine, make_sessionmaker
from sync_server.services.identity import build_runtime
from sync_server.services.sync_queues import sync_queue_sizes


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """A configured app over `engine` (or one made from `settings.database_url`)."""
    if engine is None:
        if not settings.database_url:
            raise ValueError("create_app needs an engine or settings.database_url")
        engine = make_engine(settings.database_url)
    app = FastAPI(
        title="Clinic FHIR R4 sync server",
        version=fhir.SOFTWARE_VERSION,
        default_response_class=OrjsonResponse,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.identity = identity = build_runtime(settings)
    app.state.access_guard = identity.guard
    app.state.audit_sink = identity.audit

    app.router.routes.append(fhir.fast_read_route())  # first: see its docstring
    app.include_router(health.router)
    app.include_router(auth.router)
    # Before the generic FHIR routes: /fhir/R4/AuditEvent and /fhir/R4/.well-known/...
    app.include_router(admin.router)
    app.include_router(smart.router)
    app.router.routes.append(fhir.fast_search_route())  # after admin: see its docstring
    app.include_router(fhir.router)
    app.include_router(sync.router)
    app.include_router(access_log.router)
    app.include_router(scheduling.router)
    if settings.updates_dir is not None:
        app.include_router(updates_router(settings.updates_dir))
    install_metrics(app, queue_sizes=lambda: sync_queue_sizes(engine))

    install_error_handlers(app)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings (and DATABASE_URL) from the environment."""
    from sync_server.logging_setup import configure_logging

    settings = Settings()
    configure_logging(settings)
    app = create_app(settings)
    # The modules and models loaded so far live as long as the worker: keeping them
    # out of the cyclic collector's scans makes a full collection during a large
    # request (a sync push of 500 resources) several times cheaper.
    gc.freeze()
    threading.Thread(target=_warm_up, name="validator-warm-up", daemon=True).start()
    return app


def _warm_up() -> None:
    """Build every type's validator while the worker starts serving, then freeze them too."""
    warm_validators()
    gc.freeze()
