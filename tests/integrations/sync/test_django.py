"""Django: fastpeewee next to the Django ORM in one project.

The recipe wraps the project's WSGI application (``wsgi.py``)::

    application = WSGIDatabaseMiddleware(get_wsgi_application(), db)

Django's test ``Client`` calls the handler directly, past ``wsgi.py``, so
these tests serve the wrapped application with waitress. The two ORMs keep
their own connections and transactions: ``ATOMIC_REQUESTS`` is Django's,
``atomic=True`` is fastpeewee's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django  # type: ignore[import-untyped]
import httpx
import pytest
from django.conf import settings  # type: ignore[import-untyped]
from django.http import HttpRequest, HttpResponse  # type: ignore[import-untyped]
from django.urls import path  # type: ignore[import-untyped]

from fastpeewee import WSGIDatabaseMiddleware

from .helpers import (
    Views,
    assert_clean,
    check_atomic,
    check_concurrency,
    check_exception,
    count_outside,
    serve,
)

# The views of the test being run (the URLconf below is this module's).
_current: dict[str, Views] = {}


def _view(action: str) -> Any:
    def handle(request: HttpRequest, **params: str) -> HttpResponse:
        return HttpResponse(getattr(_current["views"], action)(*params.values()))

    return handle


def both(request: HttpRequest, name: str) -> HttpResponse:
    """A view using both ORMs: a Django ``Group`` and a fastpeewee ``User``."""
    from django.contrib.auth.models import Group  # type: ignore[import-untyped]

    from ...models import User

    Group.objects.create(name=name)
    User.create(username=name)
    if request.GET.get("fail"):
        raise RuntimeError("fail after both writes")
    return HttpResponse(f"{Group.objects.count()} {User.select().count()}")


urlpatterns = [
    path("probe", _view("probe")),
    path("boom", _view("boom")),
    path("create/<name>", _view("create")),
    path("fail/<name>", _view("fail")),
    path("both/<name>", both),
]


@pytest.fixture(scope="module")
def django_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Django configured in-process: its own SQLite database, this module's URLs."""
    from django.core.management import call_command  # type: ignore[import-untyped]

    db_file = tmp_path_factory.mktemp("django") / "django.sqlite3"
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test-only",
            ALLOWED_HOSTS=["127.0.0.1", "testserver"],
            ROOT_URLCONF=__name__,
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db_file}},
            MIDDLEWARE=[],
            USE_TZ=True,
        )
        django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return db_file


@pytest.fixture
def build(django_project: Path) -> Iterator[Any]:
    from django.core.wsgi import get_wsgi_application  # type: ignore[import-untyped]

    def build(views: Views, atomic: bool) -> WSGIDatabaseMiddleware:
        """The recipe: the project's WSGI application, wrapped."""
        _current["views"] = views
        return WSGIDatabaseMiddleware(get_wsgi_application(), views.db, atomic=atomic)

    yield build
    _current.clear()


def test_concurrent_requests_never_share_a_connection(sdb, build):
    check_concurrency(sdb, build)


def test_an_exception_in_a_view_leaves_no_open_transaction(sdb, build):
    check_exception(sdb, build)


def test_atomic_commits_and_rolls_back(sdb, build):
    check_atomic(sdb, build)


def test_a_view_using_both_orms(sdb, build):
    from django.contrib.auth.models import Group

    with serve(build(Views(sdb), True)) as url:
        ok = httpx.get(url + "/both/ann", timeout=10)
        failed = httpx.get(url + "/both/bob?fail=1", timeout=10)
    assert ok.status_code == 200 and ok.text == "1 1"
    assert failed.status_code == 500
    assert "fail after" not in failed.text  # DEBUG off: no traceback in the body
    assert count_outside(sdb, "ann") == 1
    assert count_outside(sdb, "bob") == 0  # fastpeewee's request transaction rolled back
    # Django's ORM autocommits on its own connection (ATOMIC_REQUESTS is off).
    assert sorted(Group.objects.values_list("name", flat=True)) == ["ann", "bob"]
    Group.objects.all().delete()
    assert_clean(sdb)
