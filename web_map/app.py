"""The review application: FastAPI pages (Jinja2 + Folium) and the JSON/GeoJSON API.

Why one file of ~800 lines: every route is a closure over the one engine and configuration that
``create_app`` receives, and the routes are thin (rules live in ``gis_db.workflow``). The next cut,
when it grows, is FastAPI routers: pages, the JSON API, tiles and chips.

``create_app(engine, config)`` builds it. Every rule of the workflow is ``gis_db.workflow``'s:
the routes add only who may call them (roles, the user's 街镇) and turn domain errors into HTTP
statuses through the one table in :mod:`web_map.errors`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import date, datetime
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gis_db import stats, workflow
from gis_db.domain import CaseState, DetectionState, Disposal, MatchClass
from gis_db.errors import GisDbError, InvalidInputError
from gis_db.schema import working_srid
from gis_db.workflow import CaseAction, DetectionAction, transaction
from web_map import accounts, evidence, geo, labels, maps, messages, queries, tiles
from web_map.accounts import User
from web_map.config import WebConfig
from web_map.errors import (
    AuthenticationRequiredError,
    ForbiddenError,
    LoginFailedError,
    RateLimitedError,
    UploadTooLargeError,
    WebMapError,
    http_status,
    status_heading,
)
from web_map.security import LoginLimiter, check_csrf, csrf_token

log = logging.getLogger("web_map")
PACKAGE = files("web_map")
SESSION_COOKIE = "weijian_session"


class ReviewBody(BaseModel):
    """A review decision on a detection. ``version``: the version the reviewer saw."""

    action: str
    version: int
    comment: str | None = Field(None, max_length=2000)


class CaseActionBody(BaseModel):
    """An action on a case. ``evidence``: ids of photos uploaded for this case, or references."""

    action: str
    version: int
    comment: str | None = Field(None, max_length=2000)
    disposal: str | None = None
    evidence_file_ids: list[int] = Field(default_factory=list)
    evidence_refs: list[str] = Field(default_factory=list)


class SecurityHeaders:
    """ASGI middleware adding nosniff, frame denial and a same-origin referrer policy.

    It also refuses (413) a request whose declared body is larger than ``max_body`` bytes
    before anything reads it, so an oversized upload is never spooled to disk: JSON for the
    API, the error page (made by ``page``, in Chinese) for a page's form.
    """

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    )

    def __init__(
        self,
        app: ASGIApp,
        max_body: int = 100 * 1024 * 1024,
        lang: str = "zh",
        page: Callable[[str, UploadTooLargeError], str] | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.lang = lang
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_body:
            exc = UploadTooLargeError(
                f"the request has {int(declared) / evidence.MB:.1f} MB; at most "
                f"{self.max_body / evidence.MB:.1f} MB are accepted: send fewer or smaller photos",
                code="request_too_large",
                size_mb=round(int(declared) / evidence.MB, 1),
                limit_mb=round(self.max_body / evidence.MB, 1),
            )
            path = str(scope.get("path", "/"))
            if self.page is not None and not _is_api_path(path):
                body = self.page(path, exc).encode()
                ctype = b"text/html; charset=utf-8"
            else:
                body = json.dumps(messages.api_error(exc, self.lang), ensure_ascii=False).encode()
                ctype = b"application/json"
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [(b"content-type", ctype), *self.HEADERS],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + list(self.HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, ensure_ascii=False, default=_json_default)
    return Response(body, status_code=status, media_type="application/json")


def _geojson(text_: str) -> Response:
    return Response(text_, media_type="application/geo+json")


def _is_api_path(path: str) -> bool:
    """Whether ``path`` answers in JSON or images (the API), not with pages."""
    return path.startswith(("/api/", "/tiles/", "/chips/", "/evidence/"))


def _case_of_form(path: str) -> str | None:
    """The case page a case form was posted from (``/cases/7/act`` -> ``/cases/7``), or None."""
    found = re.fullmatch(r"(/cases/\d+)/act", path)
    return found.group(1) if found else None


def _safe_next(value: str | None) -> str:
    """A local path to go back to (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def current_user(request: Request) -> User | None:
    """The logged-in, enabled account of this request's session, or None."""
    uid = request.session.get("uid")
    if uid is None:
        return None
    user = accounts.get_user_by_id(request.app.state.engine, int(uid))
    if user is None or user.disabled or user.session_epoch != request.session.get("epoch"):
        request.session.pop("uid", None)
        return None
    return user


def require_user(request: Request) -> User:
    """The logged-in account; AuthenticationRequiredError (401) when there is none."""
    user = current_user(request)
    if user is None:
        raise AuthenticationRequiredError("log in first (POST /login)")
    return user


UserDep = Annotated[User, Depends(require_user)]


def create_app(engine: Engine, config: WebConfig) -> FastAPI:
    """The review application over ``engine`` (a migrated weijian database).

    Args:
        engine: SQLAlchemy engine of the PostGIS database (schema at head, with accounts).
        config: secret key, evidence folder, Tianditu key and limits (:class:`WebConfig`).
    """
    app = FastAPI(
        title="weijian 违建监测 review",
        dependencies=[Depends(check_csrf)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=config.secret_key,
        session_cookie=SESSION_COOKIE,
        max_age=int(config.session_hours * 3600),
        same_site="lax",
        https_only=config.secure_cookies,
    )
    app.mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")
    templates = Jinja2Templates(directory=str(PACKAGE / "templates"))
    templates.env.filters["local"] = labels.local_time
    limiter = LoginLimiter(config.login_max_failures, config.login_window_s)
    evidence_dir = Path(config.evidence_dir)
    app.state.engine = engine
    app.state.config = config
    cached_srid: list[int] = []

    def srid() -> int:
        """The working SRID, read once (it never changes for a database)."""
        if not cached_srid:
            with engine.connect() as conn:
                cached_srid.append(working_srid(conn))
        return cached_srid[0]

    # ---- who is asking --------------------------------------------------------------------

    def lang_of(request: Request) -> str:
        lang = request.session.get("lang") or config.language
        return lang if lang in ("zh", "en") else "zh"

    def can_case(user: User, action: CaseAction) -> None:
        if action not in accounts.CASE_ACTIONS[user.role]:
            raise ForbiddenError(
                f"{user.role.zh} ({user.role.value}) may not {action.zh} ({action.value})",
                code="role_forbidden",
                role=user.role.value,
                what="case",
                action=action.value,
            )

    def can_detection(user: User, action: DetectionAction) -> None:
        if action not in accounts.DETECTION_ACTIONS[user.role]:
            raise ForbiddenError(
                f"{user.role.zh} ({user.role.value}) may not {action.zh} ({action.value})",
                code="role_forbidden",
                role=user.role.value,
                what="detection",
                action=action.value,
            )

    def parse_action(enum: type[CaseAction] | type[DetectionAction], value: str) -> Any:
        try:
            return enum.parse(value.replace("-", "_"))
        except ValueError as exc:
            raise InvalidInputError(str(exc), code="unknown_action", value=value) from None

    def town_name(user: User | None) -> str | None:
        """The name of a 街镇 user's 街镇 (shown instead of its code), None for office users."""
        if user is None or not user.street_town:
            return None
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT name FROM street_town WHERE code = :c"), {"c": user.street_town}
            ).scalar()
        return str(found) if found else None

    def render(
        request: Request, name: str, user: User | None, status: int = 200, **ctx: Any
    ) -> Response:
        lang = lang_of(request)

        def t(zh: str, en: str) -> str:
            return zh if lang == "zh" else en

        return templates.TemplateResponse(
            request,
            name,
            {
                "user": user,
                "town_name": town_name(user),
                "lang": lang,
                "t": t,
                "csrf": csrf_token(request),
                "path": request.url.path + (("?" + request.url.query) if request.url.query else ""),
                "L": labels.all_labels(lang),
                "colours": labels.colours(),
                **ctx,
            },
            status_code=status,
        )

    # ---- errors: one table ------------------------------------------------------------------

    def _is_api(request: Request) -> bool:
        """Whether to answer in JSON (the API, tiles, chips, photos) rather than with a page.

        A photo opened in a browser tab (``/evidence/N`` asked for as HTML) gets the page.
        """
        path = request.url.path
        if path.startswith("/evidence/") and "text/html" in request.headers.get("accept", ""):
            return False
        return _is_api_path(path)

    async def domain_error(request: Request, exc: Exception) -> Response:
        status = http_status(exc)
        if status >= 500:
            log.exception("request %s failed", request.url.path, exc_info=exc)
        if _is_api(request):
            return _json(messages.api_error(exc, lang_of(request)), status)
        if status == 401:
            target = quote(
                request.url.path + ("?" + request.url.query if request.url.query else "")
            )
            return RedirectResponse(f"/login?next={target}", status_code=303)
        return render(
            request,
            "error.html",
            current_user(request) if status < 500 else None,  # the database may be the cause
            status=status,
            message=messages.explain(exc, lang_of(request)),
            status_code=status,
            heading=status_heading(status),
            back=_case_of_form(request.url.path) if status != 404 else None,
        )

    app.add_exception_handler(WebMapError, domain_error)
    app.add_exception_handler(GisDbError, domain_error)

    async def http_error(request: Request, exc: Exception) -> Response:
        """An unknown address or a malformed one (``/cases/abc``): the error page for staff.

        The API keeps FastAPI's JSON answers; a page never shows them raw.
        """
        fields: list[str] = []
        if isinstance(exc, RequestValidationError):
            fields = [".".join(str(p) for p in e["loc"][1:]) for e in exc.errors()]
            status, detail = (
                422,
                "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
                ),
            )
        else:
            assert isinstance(exc, StarletteHTTPException)
            status, detail = exc.status_code, str(exc.detail)
        if _is_api(request) or request.url.path.startswith("/static/"):
            if isinstance(exc, RequestValidationError):
                return await request_validation_exception_handler(request, exc)
            assert isinstance(exc, StarletteHTTPException)
            return await http_exception_handler(request, exc)
        code = {404: "page_not_found", 405: "method_not_allowed", 422: "bad_parameters"}
        return render(
            request,
            "error.html",
            current_user(request),
            status=status,
            message=messages.say(
                code.get(status, "http_error"), {"fields": fields}, lang_of(request), detail
            ),
            status_code=status,
            heading=status_heading(status),
        )

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, http_error)

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        """A bug or an outage: the error page (no traceback, nothing read from the database).

        The database out of reach mid-request is 503 ("try again later"), anything else 500;
        the traceback goes to the server's log only.
        """
        status = 503 if isinstance(exc, OperationalError) else 500
        code = "database_unavailable" if status == 503 else "internal_error"
        detail = "the database is unavailable" if status == 503 else "internal error"
        message = messages.say(code, {}, lang_of(request), f"{detail}: see the log")
        if _is_api(request):
            return _json(
                {
                    "error": "InternalError",
                    "code": code,
                    "detail": f"{detail}: see the log",
                    "message": message,
                },
                status,
            )
        return render(
            request,
            "error.html",
            None,
            status=status,
            message=message,
            status_code=status,
            heading=status_heading(status),
        )

    app.add_exception_handler(Exception, unexpected_error)

    # ---- log-in -----------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> Response:
        target = _safe_next(next)
        # sent here from a page (not logged in, or the session ended): say why
        why = (
            None
            if target == "/"
            else messages.say(
                "login_required", {}, lang_of(request), "Log in first; you then go on to that page."
            )
        )
        return render(request, "login.html", None, next=target, error=None, why=why)

    @app.post("/login")
    def login(
        request: Request,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        client = request.client.host if request.client else "?"
        try:
            limiter.check(client, username)
        except RateLimitedError as exc:  # the form again, saying how long to wait
            msg = messages.explain(exc, lang_of(request))
            return render(request, "login.html", None, status=429, next=_safe_next(next), error=msg)
        user = accounts.authenticate(engine, username, password)
        if user is None:
            limiter.failed(client, username)
            failed = LoginFailedError("wrong user name or password")
            msg = messages.explain(failed, lang_of(request))
            return render(
                request,
                "login.html",
                None,
                status=401,
                next=_safe_next(next),
                error=msg,
                max_failures=config.login_max_failures,
            )
        limiter.succeeded(client, username)
        chosen = request.session.get("lang")
        request.session.clear()
        request.session.update(uid=user.id, epoch=user.session_epoch)
        if chosen:
            request.session["lang"] = chosen
        csrf_token(request)
        return RedirectResponse(_safe_next(next), status_code=303)

    @app.post("/logout")
    def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/lang")
    def switch_language(request: Request, to: str = "zh", next: str = "/") -> Response:
        request.session["lang"] = "en" if to == "en" else "zh"
        return RedirectResponse(_safe_next(next), status_code=303)

    # ---- pages ------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request, user: UserDep) -> Response:
        with transaction(engine) as conn:
            runs = queries.runs(conn, user.street_town)
        return render(request, "home.html", user, runs=runs)

    @app.get("/runs/{run_id}/map", response_class=HTMLResponse)
    def map_page(request: Request, run_id: int, user: UserDep, view: str = "swipe") -> Response:
        lang = lang_of(request)
        with transaction(engine) as conn:
            run = queries.run(conn, run_id)
        rendered = maps.build_run_map(
            run,
            lang=lang,
            view="dual" if view == "dual" else "swipe",
            tianditu_key=config.tianditu_key,
        )
        nav = templates.get_template("_nav.html").render(
            user=user,
            town_name=town_name(user),
            lang=lang,
            t=(lambda zh, en: zh if lang == "zh" else en),
            csrf=csrf_token(request),
            path=f"/runs/{run_id}/map?view={view}",
        )
        page_config = {
            "runId": run_id,
            "maps": rendered.map_names,
            "layers": rendered.layers,
            "view": view,
            "csrf": csrf_token(request),
            "lang": lang,
            "labels": labels.all_labels(lang),
            "colours": labels.colours(),
            "streetTown": user.street_town,
            "canReview": bool(accounts.DETECTION_ACTIONS[user.role]),
        }
        page = maps.insert(
            rendered.html,
            head=(
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                '<link rel="icon" href="data:,">'
                f"<title>{'比对批次' if lang == 'zh' else 'Run'} {run_id}</title>"
                + maps.vendor_tags()
                + '<link rel="stylesheet" href="/static/app.css">'
            ),
            body_start=nav + _map_toolbar(run_id, view, lang),
            body_end=(
                '<script src="/static/app.js"></script>'
                f"<script>WJ.mapPage({maps._script_json(page_config)});</script>"
            ),
        )
        return HTMLResponse(page)

    def _map_toolbar(run_id: int, view: str, lang: str) -> str:
        zh = lang == "zh"
        swipe = "卷帘对比" if zh else "swipe"
        dual = "双屏联动" if zh else "two maps"
        review = "核查队列" if zh else "review queue"
        return (
            f'<div class="wj-toolbar"><a class="{"on" if view != "dual" else ""}" '
            f'href="/runs/{run_id}/map?view=swipe">{swipe}</a>'
            f'<a class="{"on" if view == "dual" else ""}" href="/runs/{run_id}/map?view=dual">'
            f'{dual}</a><a href="/runs/{run_id}/review">{review}</a></div>'
        )

    @app.get("/runs/{run_id}/review", response_class=HTMLResponse)
    def review_page(request: Request, run_id: int, user: UserDep) -> Response:
        with transaction(engine) as conn:
            run = queries.run(conn, run_id)
            towns = conn.exec_driver_sql("SELECT code, name FROM street_town ORDER BY code").all()
        return render(
            request,
            "review.html",
            user,
            run=run,
            towns=[t for t in towns if user.street_town in (None, t.code)],
            match_classes=list(MatchClass),
            states=list(DetectionState),
            can_review=bool(accounts.DETECTION_ACTIONS[user.role]),
        )

    @app.get("/cases", response_class=HTMLResponse)
    def cases_page(
        request: Request,
        user: UserDep,
        state: str | None = None,
        q: str | None = None,
        page: int = Query(1, ge=1),
    ) -> Response:
        with transaction(engine) as conn:
            rows = queries.cases(
                conn, user.street_town, state=state or None, q=q, limit=100, offset=(page - 1) * 100
            )
        return render(
            request,
            "cases.html",
            user,
            rows=rows,
            state=state or "",
            q=q or "",
            page=page,
            states=list(CaseState),
        )

    @app.get("/cases/{case_id}", response_class=HTMLResponse)
    def case_page(
        request: Request,
        case_id: int,
        user: UserDep,
        msg: str | None = None,
        err: str | None = None,
    ) -> Response:
        with transaction(engine) as conn:
            case = queries.case(conn, case_id, user.street_town)
            hist = workflow.history(conn, case_id=case_id)
            photos = queries.evidence_files(conn, case_id)
        allowed = [
            a
            for a in workflow.allowed_case_actions(case["state"])
            if a in accounts.CASE_ACTIONS[user.role]
        ]
        return render(
            request,
            "case.html",
            user,
            case=case,
            history=hist,
            photos=photos,
            actions=allowed,
            disposals=list(Disposal),
            msg=msg,
            err=err,
            CaseState=CaseState,
            CaseAction=CaseAction,
        )

    @app.post("/cases/{case_id}/act")
    async def case_act_form(
        request: Request,
        case_id: int,
        user: UserDep,
        action: Annotated[str, Form()],
        version: Annotated[int, Form()],
        comment: Annotated[str | None, Form()] = None,
        disposal: Annotated[str | None, Form()] = None,
        evidence_ref: Annotated[str | None, Form()] = None,
        photos: Annotated[list[UploadFile] | None, File()] = None,
    ) -> Response:
        uploads: list[tuple[bytes, str | None, str | None]] = []
        for photo in photos or []:
            if photo.filename:
                data = await photo.read(config.max_upload_bytes + 1)
                uploads.append((data, photo.filename, photo.content_type))
        refs = [evidence_ref.strip()] if evidence_ref and evidence_ref.strip() else []
        lang = lang_of(request)
        try:
            result = act_on_case(
                user, case_id, action, version, comment or None, disposal or None, [], refs, uploads
            )
        except (GisDbError, WebMapError) as exc:
            # what the person can put right on the case's page (evidence missing, changed
            # meanwhile: the page reloads with the new version; a write-off that another
            # office member must sign) goes back there, said in red
            status = http_status(exc)
            second_person = getattr(exc, "code", None) == "second_person_required"
            if status not in (400, 409, 413, 415) and not second_person:
                raise
            heading = status_heading(status)
            said = messages.explain(exc, lang)
            note = f"{heading[0]}。{said}" if lang == "zh" else f"{heading[1]}: {said}"
            return RedirectResponse(f"/cases/{case_id}?err={quote(note)}", status_code=303)
        state = labels.label(CaseState(result.to_state), lang)
        done = ("已办理, 现为: " if lang == "zh" else "done, now: ") + state
        return RedirectResponse(f"/cases/{case_id}?msg={quote(done)}", status_code=303)

    @app.get("/due", response_class=HTMLResponse)
    def due_page(request: Request, user: UserDep, within: int = Query(7, ge=0, le=365)) -> Response:
        frame = stats.due_reinspections(engine, within_days=within, street_town=user.street_town)
        rows = frame.to_dict("records")
        return render(request, "due.html", user, rows=rows, within=within)

    @app.get("/evidence/{file_id}")
    def evidence_download(file_id: int, user: UserDep) -> Response:
        with transaction(engine) as conn:
            rec = queries.evidence_file(conn, file_id, user.street_town)
        path = evidence.stored_path(evidence_dir, rec["stored_name"])
        return FileResponse(
            path, media_type=rec["content_type"], headers={"X-Content-SHA256": rec["sha256"]}
        )

    # ---- API --------------------------------------------------------------------------------

    @app.get("/api/me")
    def api_me(request: Request, user: UserDep) -> Response:
        return _json(
            {
                "username": user.username,
                "role": user.role.value,
                "street_town": user.street_town,
                "csrf_token": csrf_token(request),
            }
        )

    @app.get("/api/runs")
    def api_runs(user: UserDep) -> Response:
        with transaction(engine) as conn:
            return _json(queries.runs(conn, user.street_town))

    @app.get("/api/runs/{run_id}/detections")
    def api_detections(
        run_id: int,
        user: UserDep,
        bbox: str | None = None,
        match_class: Annotated[list[str] | None, Query(alias="class")] = None,
        state: Annotated[list[str] | None, Query()] = None,
        limit: int | None = Query(None, ge=1),
    ) -> Response:
        box = geo.parse_bbox(bbox)
        with transaction(engine) as conn:
            queries.check_run(conn, run_id)
            return _geojson(
                geo.detections_geojson(
                    conn,
                    run_id,
                    bbox=box,
                    street_town=user.street_town,
                    match_classes=match_class,
                    states=state,
                    limit=min(limit or config.max_features, config.max_features),
                    srid=srid(),
                )
            )

    @app.get("/api/runs/{run_id}/queue")
    def api_queue(
        run_id: int,
        user: UserDep,
        match_class: Annotated[str | None, Query(alias="class")] = None,
        state: str | None = "new",
        street_town: str | None = None,
        sort: str = "score",
        limit: int = Query(200, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> Response:
        with transaction(engine) as conn:
            queries.run(conn, run_id)
            rows = queries.queue(
                conn,
                run_id,
                user.street_town,
                match_class=match_class,
                state=state,
                unit=street_town,
                sort=sort,
                limit=limit,
                offset=offset,
            )
        return _json(rows)

    @app.get("/api/detections/{detection_id}")
    def api_detection(detection_id: int, user: UserDep) -> Response:
        with transaction(engine) as conn:
            row = queries.detection(conn, detection_id, user.street_town)
            row["history"] = workflow.history(conn, detection_id=detection_id)
        row["allowed_actions"] = [
            a.value
            for a in workflow.allowed_detection_actions(row["state"])
            if a in accounts.DETECTION_ACTIONS[user.role]
        ]
        return _json(row)

    @app.post("/api/detections/{detection_id}/review")
    def api_review(detection_id: int, body: ReviewBody, user: UserDep) -> Response:
        action = parse_action(DetectionAction, body.action)
        can_detection(user, action)
        assert user.workflow_role is not None
        with transaction(engine) as conn:
            queries.detection(conn, detection_id, user.street_town)  # 404 outside the 街镇
            result = workflow.review_detection(
                conn,
                detection_id,
                action,
                actor=user.username,
                role=user.workflow_role,
                comment=body.comment,
                expected_version=body.version,
            )
        return _json(result.__dict__)

    @app.get("/api/cases")
    def api_cases(
        user: UserDep,
        bbox: str | None = None,
        state: Annotated[list[str] | None, Query()] = None,
        limit: int | None = Query(None, ge=1),
    ) -> Response:
        box = geo.parse_bbox(bbox)
        with transaction(engine) as conn:
            return _geojson(
                geo.cases_geojson(
                    conn,
                    bbox=box,
                    street_town=user.street_town,
                    states=state,
                    limit=min(limit or config.max_features, config.max_features),
                    srid=srid(),
                )
            )

    @app.get("/api/cases/{case_id}")
    def api_case(case_id: int, user: UserDep) -> Response:
        with transaction(engine) as conn:
            row = queries.case(conn, case_id, user.street_town)
            row["evidence_files"] = queries.evidence_files(conn, case_id)
        row["allowed_actions"] = [
            a.value
            for a in workflow.allowed_case_actions(row["state"])
            if a in accounts.CASE_ACTIONS[user.role]
        ]
        return _json(row)

    @app.get("/api/cases/{case_id}/history")
    def api_case_history(case_id: int, user: UserDep) -> Response:
        with transaction(engine) as conn:
            queries.case(conn, case_id, user.street_town)
            return _json(workflow.history(conn, case_id=case_id))

    def act_on_case(
        user: User,
        case_id: int,
        action_text: str,
        version: int,
        comment: str | None,
        disposal: str | None,
        file_ids: list[int],
        refs: list[str],
        uploads: list[tuple[bytes, str | None, str | None]],
    ) -> workflow.TransitionResult:
        action = parse_action(CaseAction, action_text)
        can_case(user, action)
        assert user.workflow_role is not None
        with transaction(engine) as conn:
            queries.case(conn, case_id, user.street_town)  # 404 outside the 街镇
            items: list[workflow.Evidence] = list(refs)
            for data, name, ctype in uploads:
                items.append(
                    evidence.store_photo(
                        conn,
                        evidence_dir,
                        case_id=case_id,
                        data=data,
                        original_name=name,
                        declared_type=ctype,
                        uploaded_by=user.username,
                        max_bytes=config.max_upload_bytes,
                        accepted=config.photo_types,
                    )
                )
            for fid in file_ids:
                rec = queries.evidence_file(conn, fid, user.street_town)
                if rec["case_id"] != case_id:
                    raise InvalidInputError(
                        f"photo {fid} belongs to another case",
                        code="photo_of_other_case",
                        file_id=fid,
                    )
                items.append(
                    {"evidence_file_id": fid, "sha256": rec["sha256"], "name": rec["original_name"]}
                )
            return workflow.transition_case(
                conn,
                case_id,
                action,
                actor=user.username,
                role=user.workflow_role,
                comment=comment,
                evidence=items,
                disposal=disposal,
                expected_version=version,
                actor_unit=user.street_town,
                reinspection_days=config.reinspection_days,
            )

    @app.post("/api/cases/{case_id}/actions")
    def api_case_action(case_id: int, body: CaseActionBody, user: UserDep) -> Response:
        result = act_on_case(
            user,
            case_id,
            body.action,
            body.version,
            body.comment,
            body.disposal,
            body.evidence_file_ids,
            body.evidence_refs,
            [],
        )
        return _json(result.__dict__)

    @app.post("/api/cases/{case_id}/evidence")
    async def api_upload(
        case_id: int, user: UserDep, file: Annotated[UploadFile, File()]
    ) -> Response:
        if not accounts.CASE_ACTIONS[user.role]:
            raise ForbiddenError(
                "an analyst cannot attach evidence", code="read_only", role=user.role.value
            )
        data = await file.read(config.max_upload_bytes + 1)
        with transaction(engine) as conn:
            queries.case(conn, case_id, user.street_town)
            ref = evidence.store_photo(
                conn,
                evidence_dir,
                case_id=case_id,
                data=data,
                original_name=file.filename,
                declared_type=file.content_type,
                uploaded_by=user.username,
                max_bytes=config.max_upload_bytes,
                accepted=config.photo_types,
            )
        return _json(ref, 201)

    @app.get("/api/units")
    def api_units(user: UserDep, level: str = "street_town", bbox: str | None = None) -> Response:
        if level not in ("street_town", "village"):
            raise InvalidInputError("level must be street_town or village")
        box = geo.parse_bbox(bbox)
        today = stats.office_today()
        frame = stats.unit_stats(engine, today.replace(day=1), today, by=level)  # type: ignore[arg-type]
        warnings = dict(zip(frame["unit_code"], frame["warning"], strict=True))
        with transaction(engine) as conn:
            return _geojson(
                geo.units_geojson(
                    conn,
                    warnings,
                    street_town=user.street_town,
                    level=level,  # type: ignore[arg-type]
                    bbox=box,
                    srid=srid(),
                )
            )

    @app.get("/api/search")
    def api_search(user: UserDep, q: str = Query("", max_length=200)) -> Response:
        with transaction(engine) as conn:
            return _json(queries.search(conn, q, user.street_town))

    @app.get("/api/due")
    def api_due(user: UserDep, within: int = Query(0, ge=0, le=365)) -> Response:
        frame = stats.due_reinspections(engine, within_days=within, street_town=user.street_town)
        return _json(frame.to_dict("records"))

    # ---- imagery ----------------------------------------------------------------------------

    @app.get("/tiles/{scene_id}/{z}/{x}/{y}.png")
    def tile(scene_id: int, z: int, x: int, y: int, user: UserDep) -> Response:
        with transaction(engine) as conn:
            image = tiles.scene_image(conn, scene_id)
        return Response(
            tiles.render_tile(image, z, x, y),
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    @app.get("/chips/{detection_id}/{which}.png")
    def chip(detection_id: int, which: str, user: UserDep) -> Response:
        if which not in ("before", "after"):
            raise ForbiddenError("a chip is 'before' or 'after'")
        with transaction(engine) as conn:
            det = queries.detection(conn, detection_id, user.street_town)
            scene = det["before_scene_id"] if which == "before" else det["after_scene_id"]
            image = tiles.scene_image(conn, scene)
            box = queries.detection_box_working(conn, detection_id, 15.0)
            bounds_crs = queries.working_crs(conn)
        return Response(
            tiles.render_part(image, box, bounds_crs, max_size=256),
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    def too_large_page(path: str, exc: UploadTooLargeError) -> str:
        """The error page of a form refused before it was read, linking back to its case.

        The request is not read, so its session is unknown: the page is in the default language.
        """
        lang = config.language
        return templates.get_template("error.html").render(
            user=None,
            lang=lang,
            t=(lambda zh, en: zh if lang == "zh" else en),
            csrf="",
            path=path,
            heading=status_heading(413),
            status_code=413,
            message=messages.explain(exc, lang),
            back=_case_of_form(path),
        )

    # a request may carry a few photos at the size limit, plus the form fields
    app.add_middleware(
        SecurityHeaders,
        max_body=5 * config.max_upload_bytes + (1 << 20),
        lang=config.language,
        page=too_large_page,
    )

    return app
