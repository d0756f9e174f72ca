"""The app's default response class: JSON written by orjson.

FastAPI deprecated its own `ORJSONResponse` in favour of serialising through a
declared response model; most routes here return prepared dicts (FHIR JSON,
sync pages) without one, so the few lines are kept here instead.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
