"""The annotation server: FastAPI over an :class:`Annotator` (API in docs/annotation_api.md).

Safe by default: binds 127.0.0.1 (the CLI), an optional bearer token guards every ``/api`` request (the
page and its assets carry no data and load without it), request bodies are capped (413), bodies are
validated by pydantic (422 with the field named), image ids are looked up in the list made at start (404
otherwise: no client string is ever joined to a path), and errors reach the client as ``{"detail": ...}``
without a stack trace.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rgbxseg.errors import RgbxsegError
from rgbxseg.web.annotator import Annotator, UnknownImage
from rgbxseg.web.export import export_annotations

LOG = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClickBody(_Body):
    y: int = Field(ge=0)
    x: int = Field(ge=0)
    positive: bool = True


class SurfaceBody(_Body):
    class_id: int


class SurfaceRef(_Body):
    surface: int = Field(ge=1)


class StatusBody(_Body):
    status: Literal["in_progress", "done"]


class ExportBody(_Body):
    formats: list[Literal["png", "surfaces", "coco"]] = ["png", "surfaces", "coco"]


class BodyLimit:
    """ASGI middleware answering 413 to a request whose body exceeds ``limit`` bytes (declared or streamed)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and int(declared) > self.limit:
            await JSONResponse({"detail": "request body too large"}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await JSONResponse({"detail": "request body too large"}, status_code=413)(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(annotator: Annotator, token: str | None = None, export_dir: Path | None = None) -> FastAPI:
    """The FastAPI application serving ``annotator``; ``token`` (if given) is required on every /api call."""
    app = FastAPI(title="rgbxseg annotate", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit)
    _guard(app, token)
    _errors(app)
    export_to = export_dir or annotator.project.folder / "export"

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in files:
            raise UnknownImage(f"no static file '{name}'")
        return FileResponse(files[name])

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        classes = [{"id": c.id, "name": c.name, "color": c.color} for c in annotator.classes.values()]
        engine = {"modalities": list(annotator.engine.modalities), "runtime": getattr(annotator.engine, "runtime", "")}
        return {
            "classes": classes,
            "modalities": list(annotator.modalities),
            "images": len(annotator.images),
            "engine": engine,
        }

    @app.get("/api/images")
    def images() -> list[dict[str, Any]]:
        return annotator.listing()

    @app.get("/api/images/{image_id:path}/rgb")
    def rgb(image_id: str) -> Response:
        return Response(annotator.rgb_png(image_id), media_type="image/png")

    @app.get("/api/images/{image_id:path}/modality/{name}")
    def modality(image_id: str, name: str) -> Response:
        return Response(annotator.modality_png(image_id, name), media_type="image/png")

    @app.get("/api/images/{image_id:path}/state")
    def state(image_id: str) -> dict[str, Any]:
        return annotator.state(image_id)

    @app.post("/api/images/{image_id:path}/click")
    def click(image_id: str, body: ClickBody) -> dict[str, Any]:
        return annotator.apply(image_id, {"op": "click", **body.model_dump()})

    @app.post("/api/images/{image_id:path}/undo")
    def undo(image_id: str) -> dict[str, Any]:
        return annotator.apply(image_id, {"op": "undo"})

    @app.post("/api/images/{image_id:path}/redo")
    def redo(image_id: str) -> dict[str, Any]:
        return annotator.apply(image_id, {"op": "redo"})

    @app.post("/api/images/{image_id:path}/surface")
    def surface(image_id: str, body: SurfaceBody) -> dict[str, Any]:
        return annotator.apply(image_id, {"op": "surface", **body.model_dump()})

    @app.post("/api/images/{image_id:path}/select")
    def select(image_id: str, body: SurfaceRef) -> dict[str, Any]:
        return annotator.apply(image_id, {"op": "select", **body.model_dump()})

    @app.post("/api/images/{image_id:path}/delete")
    def delete(image_id: str, body: SurfaceRef) -> dict[str, Any]:
        return annotator.apply(image_id, {"op": "delete", **body.model_dump()})

    @app.post("/api/images/{image_id:path}/status")
    def status(image_id: str, body: StatusBody) -> dict[str, Any]:
        return annotator.apply(image_id, {"op": "status", **body.model_dump()})

    @app.post("/api/export")
    def export(body: ExportBody) -> dict[str, Any]:
        classes = [(c.id, c.name) for c in annotator.classes.values()]
        with annotator.lock:
            files = export_annotations(annotator.project, classes, export_to, body.formats)
        return {"folder": str(export_to), "files": [str(f.relative_to(export_to)) for f in files]}

    return app


def _guard(app: FastAPI, token: str | None) -> None:
    if token is None:
        return
    expected = f"Bearer {token}".encode()

    @app.middleware("http")
    async def require_token(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path.startswith("/api/"):
            given = request.headers.get("authorization", "").encode()
            if not secrets.compare_digest(given, expected):
                return JSONResponse({"detail": "missing or wrong token"}, status_code=401)
        return await call_next(request)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(UnknownImage)
    async def unknown(_: Request, error: UnknownImage) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(LookupError)
    async def conflict(_: Request, error: LookupError) -> JSONResponse:
        return JSONResponse({"detail": str(error).strip("'\"")}, status_code=409)

    @app.exception_handler(ValueError)
    async def invalid(_: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.exception_handler(RgbxsegError)
    async def user_error(_: Request, error: RgbxsegError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.exception_handler(Exception)
    async def internal(_: Request, error: Exception) -> JSONResponse:
        LOG.exception("internal error", exc_info=error)
        return JSONResponse({"detail": "internal server error"}, status_code=500)
