"""The web server of `expdb ui`: HTML pages (static shells whose scripts fetch JSON) and the JSON API.

Safe by default: the pages send a Content-Security-Policy that allows only the package's own
scripts, so no user text can run; every user string travels as JSON and is put in the page as
text. Reading needs nothing on loopback, and the server's token (`?token=`, then a cookie)
when it listens on another address. Writing (notes, tags) also needs the page's CSRF token in
a header, which another site's form or script cannot send.
"""

import hmac
import json
import mimetypes
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from expdb import cards
from expdb.attachments import get_attachment, stored_file
from expdb.cards import Selection
from expdb.db import Database
from expdb.errors import ExpdbError
from expdb.ui import data

STATIC = Path(str(files("expdb.ui") / "static"))
TOKEN_COOKIE = "expdb_token"
CSRF_HEADER = "x-expdb-csrf"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Attachments: no script, no plugin, no form, in a sandbox of its own origin, whatever the file holds.
ATTACHMENT_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}
PAGES = {"study": "study.html", "card": "card.html", "curves": "curves.html", "parallel": "parallel.html"}


class _Databases:
    """One open database per server thread: SQLite connections stay in the thread that opened them."""

    def __init__(self, location: str):
        self.location = location
        self._local = threading.local()

    def get(self) -> Database:
        database = getattr(self._local, "database", None)
        if database is None:
            database = Database(self.location)
            self._local.database = database
        return database


class _Guard(BaseHTTPMiddleware):
    """The token (when the server has one), and the headers every response carries."""

    def __init__(self, app, token: str | None):
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next) -> Response:
        given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
        if self.token is not None and not hmac.compare_digest(given.encode(), self.token.encode()):
            response: Response = PlainTextResponse("expdb ui: this server needs its token: open the address it printed", 401)
        else:
            response = await call_next(request)
            if self.token is not None and request.query_params.get("token"):
                response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
        response.headers.setdefault("Content-Security-Policy", CSP)  # an attachment's is stricter
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response


def _attachment(db: Database, attachment_id: int) -> Response:
    """An attached file, found by its id (a path is never taken from the request). Images are shown, any other
    file is downloaded; none may run script, not even an SVG opened on its own (a sandboxing policy)."""
    attachment = get_attachment(db, attachment_id)
    source = stored_file(db, attachment)
    image = IMAGE_TYPES.get(Path(attachment.name).suffix.lower())  # those of Attachment.is_image
    kind = image or mimetypes.guess_type(attachment.name)[0] or "application/octet-stream"
    response = FileResponse(
        source, media_type=kind, filename=attachment.name, content_disposition_type="inline" if image else "attachment"
    )
    response.headers["Content-Security-Policy"] = ATTACHMENT_CSP
    return response


def _error(error: ExpdbError, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status)


def _names(request: Request, key: str) -> list[str]:
    return [part for value in request.query_params.getlist(key) for part in value.split(",") if part.strip()]


def _selection(request: Request) -> Selection:
    """The cards asked for; the invalid ones only with `all=1`, as `--all` adds them to `expdb table` and `plot`."""
    query = request.query_params
    return Selection(
        tuple(_names(request, "cards")),
        query.get("tag") or None,
        query.get("where") or None,
        query.get("status") or None,
        query.get("all") == "1",
    )


def _number(request: Request, key: str, default=None, kind=float):
    text = request.query_params.get(key)
    if text in (None, ""):
        return default
    try:
        return kind(text)
    except ValueError:
        raise ExpdbError(f"{key}={text!r} is not a number") from None


def _table_query(request: Request) -> data.TableQuery:
    query = request.query_params
    return data.TableQuery(
        _selection(request),
        tuple(_names(request, "metric")),
        query.get("sort") or None,
        query.get("baseline") or None,
        query.get("params") or "differing",
        query.get("over") or None,
        query.get("spread") or "std",
    )


def _curve_query(request: Request, db: Database) -> tuple[list, list[str], str]:
    """The cards, metrics and x axis of a curve page."""
    chosen = data.cards_for_curves(db, _names(request, "cards"), _selection(request))
    return chosen, _names(request, "metric") or ["loss"], request.query_params.get("x") or "step"


def create_app(location: str, *, token: str | None = None, allowed_hosts: list[str] | None = None) -> Starlette:
    """The app serving the database at `location`. `token`: required of every request (a server on a
    non-loopback address); `allowed_hosts`: the Host headers answered (default: loopback only)."""
    databases = _Databases(location)
    csrf = secrets.token_urlsafe(32)
    cache = data.CurveCache()
    tables = data.TableCache()
    early = ThreadPoolExecutor(max_workers=1, thread_name_prefix="expdb-ui-early")

    def read_early(request: Request, name: str) -> None:
        """What the page will ask for (its address holds the same query), read while the browser loads its
        scripts: the page's request then waits for that reading instead of starting it. A mistake in the
        query is left to that request to report."""
        try:
            db = databases.get()
            if name == "study":
                tables.table(db, _table_query(request))
            elif name == "curves":
                cache.entries(db, *_curve_query(request, db))
        except ExpdbError:
            pass

    def page(name: str):
        template = (STATIC / PAGES[name]).read_text(encoding="utf-8").replace("{{csrf}}", csrf)

        def endpoint(request: Request) -> HTMLResponse:
            if name in ("study", "curves"):
                early.submit(read_early, request, name)
            return HTMLResponse(template)

        return endpoint

    def api(handler):
        """A JSON endpoint: the user's mistakes come back as {"error": "one line"} with status 400."""

        def endpoint(request: Request) -> Response:
            try:
                return handler(request, databases.get())
            except ExpdbError as error:
                return _error(error)

        return endpoint

    def table(request: Request, db: Database) -> Response:
        query = request.query_params
        asked = _table_query(request)
        fmt = query.get("format")
        if fmt in ("md", "latex"):
            return PlainTextResponse(data.table_text(db, asked, fmt, tables))
        if fmt:
            raise ExpdbError(f"unknown format {fmt!r}; use md or latex")
        offset, limit = _number(request, "offset", 0, int), _number(request, "limit", data.PAGE_ROWS, int)
        return JSONResponse(data.table_page(db, asked, offset=offset, limit=limit, cache=tables))

    def chips(request: Request, db: Database) -> Response:
        return JSONResponse(data.chips(db))

    def card(request: Request, db: Database) -> Response:
        return JSONResponse(data.card_page(db, request.path_params["name"]))

    def curves(request: Request, db: Database) -> Response:
        query = request.query_params
        chosen, metrics, x = _curve_query(request, db)
        payload = data.curves(
            db,
            chosen,
            metrics,
            x=x,
            smooth=_number(request, "smooth", 0.0),
            log_y=query.get("log") == "1",
            x0=_number(request, "x0"),
            x1=_number(request, "x1"),
            width=_number(request, "width", 1000, int),
            cache=cache,
            over=query.get("over") or None,
            band=query.get("band") or "ci",
        )
        return JSONResponse(payload)

    def attachment(request: Request) -> Response:
        try:
            return _attachment(databases.get(), request.path_params["id"])
        except ExpdbError as error:
            return _error(error, 404)

    def live(request: Request, db: Database) -> Response:
        return JSONResponse(data.live(db))

    def change(apply):
        """A change to the database: the page's CSRF token in a header, no other site's origin, a JSON object."""

        async def endpoint(request: Request) -> Response:
            given = request.headers.get(CSRF_HEADER, "")
            origin = request.headers.get("origin")
            same_origin = origin is None or origin.split("://", 1)[-1] == request.headers.get("host")
            if not hmac.compare_digest(given.encode(), csrf.encode()) or not same_origin:
                return JSONResponse({"error": "refused: a change must come from an expdb ui page (CSRF check)"}, 403)
            if request.headers.get("content-type", "").split(";")[0] != "application/json":
                return JSONResponse({"error": "send the change as application/json"}, 415)
            try:
                found = json.loads(await request.body() or b"null")
            except ValueError:
                found = None
            if not isinstance(found, dict):
                return _error(ExpdbError("the request body must be a JSON object"))
            name = request.path_params["name"]
            try:
                return await run_in_threadpool(lambda: apply(databases.get(), name, found))
            except ExpdbError as error:
                return _error(error)

        return endpoint

    routes = [
        Route("/", page("study")),
        Route("/card/{name}", page("card")),
        Route("/curves", page("curves")),
        Route("/parallel", page("parallel")),
        Route("/api/table", api(table)),
        Route("/api/chips", api(chips)),
        Route("/api/card/{name}/notes", change(_note), methods=["POST"]),
        Route("/api/card/{name}/tags", change(_tags), methods=["POST"]),
        Route("/api/card/{name}", api(card)),
        Route("/api/curves", api(curves)),
        Route("/api/attachment/{id:int}", attachment),
        Route("/api/live", api(live)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOOPBACK_HOSTS),
        Middleware(_Guard, token=token),
    ]
    return Starlette(routes=routes, middleware=middleware)


def _note(db: Database, name: str, found: dict) -> Response:
    text = found.get("text")
    if not isinstance(text, str):
        raise ExpdbError('a note is {"text": "..."}')
    cards.add_note(db, name, text)
    return JSONResponse({"ok": True})


def _tags(db: Database, name: str, found: dict) -> Response:
    add, remove = found.get("add", []), found.get("remove", [])
    if not all(isinstance(items, list) and all(isinstance(tag, str) for tag in items) for items in (add, remove)):
        raise ExpdbError('tags are {"add": [...], "remove": [...]}')
    if add:
        cards.tag_card(db, name, add)
    if remove:
        cards.tag_card(db, name, remove, remove=True)
    return JSONResponse({"tags": cards.get_card(db, name).tags})
