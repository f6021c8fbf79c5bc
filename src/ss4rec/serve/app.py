"""The HTTP API: a thin FastAPI app over a ``ServingCore``, built by ``create_app(core)``.

Endpoints: ``GET /health``, ``GET /info``, ``POST /recommend``, ``POST /ratings``, ``POST /events``; OpenAPI
docs at ``/docs``. Errors are 4xx with ``{"detail": "<what is wrong>"}``: unknown user or item 404, a model
that cannot answer (ratings without a rating head; a user outside the training data of a ``model.rating_base``
run) 400, malformed JSON 400, wrong types or out-of-range
values 422. Handlers are ``async`` and never await, so requests run one at a time on the event loop: the
core (its cache and log) is never used by two requests at once, and each request takes about a millisecond.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ss4rec.serve.core import ServingCore, Unsupported
from ss4rec.serve.errors import ServeError, UnknownItem, UnknownUser, UntrainedUser
from ss4rec.serve.schemas import (
    EventRequest,
    EventResponse,
    RatingsRequest,
    RatingsResponse,
    RecommendRequest,
    RecommendResponse,
)

STATUS = {UnknownUser: 404, UnknownItem: 404, Unsupported: 400, UntrainedUser: 400}


def _describe(errors: list[dict]) -> str:
    """One readable line per pydantic error: ``field: message``."""
    parts = []
    for e in errors:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


def create_app(core: ServingCore, close_on_shutdown: bool = True) -> FastAPI:
    """The app for ``core``. On shutdown it snapshots the state cache and closes the event journal."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if close_on_shutdown:
            core.close()

    app = FastAPI(title="ss4rec", summary="sequential recommendations with O(1) state updates", lifespan=lifespan)
    app.state.core = core

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, err: ServeError):
        return JSONResponse({"detail": str(err)}, status_code=STATUS.get(type(err), 422))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        errors = list(err.errors())
        broken = [e for e in errors if e.get("type") == "json_invalid"]
        if broken:
            where = broken[0].get("loc", ("body", "?"))[-1]
            message = broken[0].get("ctx", {}).get("error") or broken[0].get("msg", "invalid JSON")
            return JSONResponse({"detail": f"malformed JSON body at character {where}: {message}"}, status_code=400)
        return JSONResponse({"detail": _describe(errors)}, status_code=422)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict:
        return core.info()

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(body: RecommendRequest) -> RecommendResponse:
        items = core.recommend(body.user_id, body.k, body.exclude_seen, body.at)
        return RecommendResponse(user_id=body.user_id, items=items)

    @app.post("/ratings", response_model=RatingsResponse)
    async def ratings(body: RatingsRequest) -> RatingsResponse:
        return RatingsResponse(user_id=body.user_id, ratings=core.rate(body.user_id, body.item_ids, body.at))

    @app.post("/events", response_model=EventResponse, status_code=201)
    async def events(body: EventRequest) -> EventResponse:
        return EventResponse(**core.ingest(body.user_id, body.item_id, body.timestamp, body.rating))

    return app
