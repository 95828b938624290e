"""The studio's web app: FastAPI on 127.0.0.1, one page, a JSON API, a token.

Every request must carry the random token of the printed URL (``?token=`` or the
``X-Studio-Token`` header; never a cookie, so another site cannot make the browser send
it), name this server in its ``Host`` header (a DNS-rebinding page names its own host),
and a POST that comes from a page must come from this origin. The page itself reads
nothing from anywhere else (a strict Content-Security-Policy with a per-response nonce).
"""

from __future__ import annotations

import hmac
import secrets
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .session import Studio, StudioError

TOKEN_HEADER = "X-Studio-Token"
HOST = "127.0.0.1"  # never another interface: the studio reads your files


def _security_headers(response: Response, nonce: str | None = None) -> None:
    script = f"'nonce-{nonce}'" if nonce else "'none'"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src {script}; style-src 'unsafe-inline'; "
        "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"


def _refuse(status: int, message: str) -> JSONResponse:
    response = JSONResponse({"error": message, "key": None}, status_code=status)
    _security_headers(response)
    return response


def guard(token: str, port: int) -> Callable[..., Awaitable[Response]]:
    """The middleware every request passes: Host, token, then Origin and content type for
    anything that changes state."""
    hosts = {f"{HOST}:{port}", f"localhost:{port}"}
    origins = {f"http://{h}" for h in hosts}

    async def check(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                    ) -> Response:
        if request.headers.get("host", "") not in hosts:
            return _refuse(400, "unexpected Host header: open the address the studio printed")
        given = request.headers.get(TOKEN_HEADER) or request.query_params.get("token") or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _refuse(403, "missing or wrong token: open the address the studio printed")
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if origin is not None and origin not in origins:
                return _refuse(403, f"requests from {origin!r} are refused")
            if request.headers.get("content-type", "").split(";")[0] != "application/json":
                return _refuse(415, "send JSON (Content-Type: application/json)")
        response = await call_next(request)
        if "Content-Security-Policy" not in response.headers:
            _security_headers(response)
        return response

    return check


def _page(nonce: str) -> str:
    text = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    return text.replace("{{NONCE}}", nonce)


def _answer(work: Callable[[], Any]) -> JSONResponse:
    try:
        return JSONResponse(work())
    except StudioError as exc:
        return JSONResponse(exc.to_dict(), status_code=exc.status)


def _int(body: dict[str, Any], key: str, default: int = 0) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise StudioError(f"{key} must be a whole number >= 0", key, 400)
    return value


def create_app(studio: Studio, token: str, port: int) -> FastAPI:
    """The app: ``GET /`` the page, ``GET /api/state``, ``POST /api/preview``,
    ``/api/grid``, ``/api/validate``, ``/api/save``, ``/api/score``; ``GET /api/real``."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.middleware("http")(guard(token, port))

    @app.get("/")
    def page() -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        response = HTMLResponse(_page(nonce))
        _security_headers(response, nonce)
        return response

    @app.get("/api/state")
    def state() -> JSONResponse:
        return _answer(studio.state)

    @app.post("/api/preview")
    def preview(body: dict[str, Any]) -> JSONResponse:
        return _answer(lambda: studio.preview(
            body.get("recipe"), body.get("image"), _int(body, "seed"), _int(body, "variant"),
            before=bool(body.get("before"))))

    @app.post("/api/grid")
    def grid(body: dict[str, Any]) -> JSONResponse:
        return _answer(lambda: studio.grid(
            body.get("recipe"), body.get("image"), _int(body, "seed"), _int(body, "variant")))

    @app.post("/api/validate")
    def validate(body: dict[str, Any]) -> JSONResponse:
        return _answer(lambda: (studio.recipe(body.get("recipe")), {"ok": True})[1])

    @app.post("/api/save")
    def save(body: dict[str, Any]) -> JSONResponse:
        return _answer(lambda: studio.save(body.get("recipe")))

    @app.get("/api/real")
    def real() -> JSONResponse:
        return _answer(studio.real_crops)

    @app.post("/api/score")
    def score(body: dict[str, Any]) -> JSONResponse:
        return _answer(lambda: studio.score(body.get("recipe")))

    return app


class StudioServer:
    """A studio served on ``127.0.0.1:port`` (0: a free port), with a fresh token.

    ``run()`` serves until Ctrl-C; ``start()`` serves from a thread (tests, benchmarks)
    until ``stop()``.
    """

    def __init__(self, studio: Studio, port: int = 0, token: str | None = None) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, port))
        self.port: int = self.sock.getsockname()[1]
        self.token = token or secrets.token_urlsafe(24)
        self.app = create_app(studio, self.token, self.port)
        config = uvicorn.Config(self.app, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/?token={self.token}"

    def run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 20.0) -> StudioServer:
        self._thread = threading.Thread(target=self.run, name="defectsynth-studio", daemon=True)
        self._thread.start()
        ready = threading.Event()
        for _ in range(int(timeout / 0.05)):
            if self.server.started:
                ready.set()
                break
            ready.wait(0.05)
        if not ready.is_set():
            raise RuntimeError("the studio did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()


def main(studio: Studio, port: int, out: Any = sys.stdout) -> None:
    """Serve ``studio`` and print its address (the CLI's ``studio`` command)."""
    server = StudioServer(studio, port)
    print(f"defectsynth studio: open {server.url}", file=out, flush=True)
    print("(only this machine, and only with this token; Ctrl-C stops it)", file=out, flush=True)
    server.run()
