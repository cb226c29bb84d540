"""The users-and-items API on Flask: plain sync views, one fastpeewee database.

The models, schemas and queries are the reference app's (``examples.sql_app``
models and schemas, ``examples.sql_app_sync`` crud). The only database wiring
is :class:`~fastpeewee.WSGIDatabaseMiddleware` on ``app.wsgi_app``: a view's
statements borrow pooled connections, and whatever a request leaves behind
goes back when its response is done. Database errors are answered through
Flask's error handlers with :func:`~fastpeewee.integrations.core.error_reply`.

Run it: ``python -m flask --app examples.flask_app.main run`` (development;
Flask finds the ``create_app`` factory) or
``python -m waitress --threads=8 --call examples.flask_app.main:create_app``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, TypeVar

import peewee
from examples.sql_app import models
from examples.sql_app.database import MAX_BODY_BYTES, SLOW_SECONDS, database_from_env
from examples.sql_app.schemas import (
    ItemCreate,
    Limit,
    Skip,
    UserCreate,
    UserId,
)
from examples.sql_app_sync import crud
from flask import Flask, Response, jsonify, request
from pydantic import BaseModel, TypeAdapter, ValidationError
from werkzeug.exceptions import HTTPException

from fastpeewee import AsyncDatabase, WSGIDatabaseMiddleware
from fastpeewee.errors import PoolError
from fastpeewee.integrations.core import error_reply

T = TypeVar("T")
_USER_ID: TypeAdapter[int] = TypeAdapter(UserId)
_SKIP: TypeAdapter[int] = TypeAdapter(Skip)
_LIMIT: TypeAdapter[int] = TypeAdapter(Limit)


def _arg(adapter: TypeAdapter[T], name: str, default: T) -> T:
    """The query argument ``name``, validated (a ValidationError is a 422)."""
    value = request.args.get(name)
    return default if value is None else adapter.validate_python(value)


def _body(schema: type[BaseModel]) -> Any:
    """The JSON body, validated against ``schema`` (anything else is a 422)."""
    return schema.model_validate(request.get_json(silent=True))


def _json(value: Any, status: int = 200) -> Response:
    if isinstance(value, list):
        value = [v.model_dump(mode="json") for v in value]
    elif isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    response = jsonify(value)
    response.status_code = status
    return response


def add_error_handlers(app: Flask) -> None:
    """Answer errors with FastAPI-shaped JSON: ``{"detail": ...}``.

    Database errors go through :func:`error_reply` (404, 409, 422, 503 with
    Retry-After); one it does not map is re-raised: Flask's own 500.
    """

    def database_error(exc: Exception) -> Response:
        reply = error_reply(exc, request=f"{request.method} {request.path}")
        if reply is None:
            raise exc
        response = _json(reply.body, reply.status)
        response.headers.update(reply.headers)
        return response

    for cls in (peewee.DoesNotExist, peewee.PeeweeException, PoolError):
        app.register_error_handler(cls, database_error)

    @app.errorhandler(ValidationError)
    def invalid(exc: ValidationError) -> Response:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        return _json({"detail": errors}, 422)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return _json({"detail": exc.description}, exc.code or 500)


def create_app(db: AsyncDatabase | None = None) -> Flask:
    """The users-and-items API on ``db`` (default: ``DATABASE_URL``)."""
    db = db or database_from_env()
    models.bind(db)
    assert isinstance(db, peewee.Database)
    db.create_tables(models.MODELS, safe=True)  # Flask has no lifespan: at creation

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES  # 413 beyond
    app.wsgi_app = WSGIDatabaseMiddleware(app.wsgi_app, db)  # type: ignore[method-assign]
    add_error_handlers(app)

    @app.post("/users/")
    def create_user() -> Response:
        user = _body(UserCreate)
        if crud.email_taken(user.email):
            return _json({"detail": "Email already registered"}, 409)
        return _json(crud.create_user(user.email, user.password), 201)

    @app.get("/users/")
    def read_users() -> Response:
        skip, limit = _arg(_SKIP, "skip", 0), _arg(_LIMIT, "limit", 100)
        return _json(crud.get_users(skip=skip, limit=limit))

    @app.get("/users/<user_id>")
    def read_user(user_id: str) -> Response:
        return _json(crud.get_user(_USER_ID.validate_python(user_id)))  # 404 if missing

    @app.post("/users/<user_id>/items/")
    def create_item_for_user(user_id: str) -> Response:
        owner = _USER_ID.validate_python(user_id)
        item = _body(ItemCreate)
        if not crud.user_exists(owner):
            return _json({"detail": "User not found"}, 404)
        return _json(crud.create_user_item(owner, **item.model_dump()), 201)

    @app.get("/items/")
    def read_items() -> Response:
        skip, limit = _arg(_SKIP, "skip", 0), _arg(_LIMIT, "limit", 100)
        return _json(crud.get_items(skip=skip, limit=limit))

    @app.get("/slowusers/")
    def read_slow_users() -> Response:
        skip, limit = _arg(_SKIP, "skip", 0), _arg(_LIMIT, "limit", 100)
        crud.count_users()
        time.sleep(SLOW_SECONDS)
        return _json(crud.get_users(skip=skip, limit=limit))

    @app.get("/health")
    def health() -> Response:
        # The pools' counters (in_use, waiting, timeouts...); takes no connection.
        return _json({"pools": [dataclasses.asdict(s) for s in db.pool_stats()]})

    return app
