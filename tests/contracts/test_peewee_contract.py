"""The contract with peewee's private surface (fastpeewee.contracts.peewee).

(a) every private name the contract uses exists with the shape it expects;
(b) every peewee function fastpeewee mirrors still has the source it was
    checked against: a peewee release that changes one fails one test, named
    after it, whose message says which fastpeewee function to re-check;
(c) the accesses that used to default silently now fail loudly.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import runpy
import textwrap
from typing import Any

import peewee
import pytest

from fastpeewee import AsyncPostgresqlDatabase, AsyncSqliteDatabase
from fastpeewee.contracts import peewee as contract
from fastpeewee.contracts.peewee import MIRRORS, PRIVATE_NAMES, PeeweeContractError

# -- (a) the names -------------------------------------------------------------------


def _label(entry: contract.PrivateName) -> str:
    owner = entry.owner.__name__
    return f"{owner}.{entry.name}"


@pytest.mark.parametrize("entry", PRIVATE_NAMES, ids=_label)
def test_private_name_has_expected_shape(entry: contract.PrivateName) -> None:
    if entry.kind == "instance attribute":
        probe = contract.probes()[entry.owner]
        assert entry.name in vars(probe), f"peewee no longer sets {_label(entry)}"
        return
    found = inspect.getattr_static(entry.owner, entry.name)
    if entry.kind == "property":
        assert isinstance(found, property)
    elif entry.kind == "method":
        func = found.__func__ if isinstance(found, (classmethod, staticmethod)) else found
        assert callable(func)
        if entry.signature is not None:
            assert str(inspect.signature(func)) == entry.signature, (
                f"peewee's {_label(entry)} changed its signature; re-check its callers "
                "in fastpeewee.contracts.peewee"
            )


def test_every_owner_has_a_probe() -> None:
    owners = {e.owner for e in PRIVATE_NAMES if e.kind == "instance attribute"}
    assert owners <= contract.probes().keys()


def test_model_init_leaves_what_new_instance_builds() -> None:
    probe = contract.probes()[peewee.Model]
    built = contract.new_instance(type(probe), {"name": "probe"})
    assert vars(built).keys() == vars(probe).keys()
    assert built.__data__ == {"name": "probe"}
    assert contract.dirty_names(built) == set()
    assert contract.related_objects(built) == {}


def _import_contract_afresh() -> None:
    """Run the contract module's code again, in a namespace of its own."""
    runpy.run_path(contract.__file__)


def test_missing_method_fails_at_import_with_the_version(monkeypatch: Any) -> None:
    monkeypatch.delattr(peewee.Model, "_pk_expr")
    with pytest.raises(peewee.ImproperlyConfigured, match=r"Model\._pk_expr") as caught:
        _import_contract_afresh()
    assert type(caught.value).__name__ == "PeeweeContractError"
    assert f"peewee {contract.PEEWEE_VERSION} does not have" in str(caught.value)


def test_missing_instance_attribute_fails_at_import(monkeypatch: Any) -> None:
    init = peewee.Model.__init__

    def changed_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        del self._dirty  # a peewee that renamed it

    monkeypatch.setattr(peewee.Model, "__init__", changed_init)
    with pytest.raises(peewee.ImproperlyConfigured, match=r"Model\._dirty"):
        _import_contract_afresh()


# -- (b) the mirrors -------------------------------------------------------------------

# sha256 (first 16 hex digits) of each mirrored peewee function's source as of
# peewee 4.5.3, normalised (its AST without docstrings: comments and layout do
# not count). When one fails: read peewee's new version, bring the fastpeewee
# function named in the message in line, then update the hash here.
PINNED = {
    "Model.save": "7554566b1ee0c5d0",
    "Model.__init__": "19ed0ed54949d4a6",
    "Model.delete_instance": "bb9a9121c5303ec7",
    "Model.get_by_id": "23887a0bb00d60d8",
    "Model.select": "d9e4d6b4b36158ff",
    "Model.update": "0a309f1d30e0eb63",
    "Model.insert": "88318327bf0056b5",
    "Model.insert_many": "111a7d84eef20696",
    "Model.insert_from": "7ee691df5a600c3e",
    "Insert._generate_insert": "2dd0e5c5d5332435",
    "Insert._execute": "11c8656bfd51961f",
    "Insert.handle_result": "a803c38e92bd048f",
    "Database.last_insert_id": "f6adcf8c9f01d3c1",
    "BaseModelSelect.get": "f1f2f03c8633247c",
    "SelectBase.first": "6955e34f45af0eed",
    "SelectBase.peek": "11e3dca093b3f312",
    "BaseQuery._execute": "ca6e98191b00f51a",
    "_ModelQueryHelper._get_cursor_wrapper": "15974b3c65a0b0f6",
    "ModelSelect._get_model_cursor_wrapper": "59317eed3cb4cabe",
    "_resolve_model_columns": "028c5ec773a5e744",
    "ModelObjectCursorWrapper.process_row": "312cf96f8df325cd",
    "CursorWrapper.iterate": "8d53905dfb1f7495",
    "ExceptionWrapper.__exit__": "ef7a0adb90b18774",
    "Database.push_transaction": "f4666575b3c46375",
    "Database.pop_transaction": "d048d89a3a3cb268",
    "Database.transaction_depth": "e2972a635d48fbca",
    "Database.top_transaction": "a4dcf4df97a6f12a",
    "Database._clear_commit_callbacks": "86fea34e27f0f595",
}


def _peewee_object(qualname: str) -> Any:
    found: Any = peewee
    for part in qualname.split("."):
        found = inspect.getattr_static(found, part)
    return getattr(found, "__func__", found)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def source_hash(qualname: str) -> str:
    """The normalised source hash of a peewee function, as :data:`PINNED` holds it."""
    source = textwrap.dedent(inspect.getsource(_peewee_object(qualname)))
    tree = _strip_docstrings(ast.parse(source))
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def test_every_mirror_is_pinned() -> None:
    assert {m.peewee for m in MIRRORS} == PINNED.keys()


@pytest.mark.parametrize("mirror", MIRRORS, ids=lambda m: m.peewee)
def test_mirrored_source_unchanged(mirror: contract.Mirror) -> None:
    actual = source_hash(mirror.peewee)
    assert actual == PINNED[mirror.peewee], (
        f"peewee {contract.PEEWEE_VERSION} changed {mirror.peewee}, which "
        f"{mirror.mirrored_by} mirrors: re-check {mirror.mirrored_by} against the new "
        f"source, then pin {actual!r} in PINNED"
    )


# -- (c) accesses that used to default silently -------------------------------------


def _without(obj: Any, name: str) -> Any:
    del vars(obj)[name]
    return obj


def test_postgres_isolation_level_missing_fails_loudly() -> None:
    db = _without(AsyncPostgresqlDatabase("fastpeewee_contract"), "_isolation_level")
    with pytest.raises(PeeweeContractError, match=r"PostgresqlDatabase\._isolation_level"):
        db._plain_begin()


def test_postgres_isolation_level_is_read() -> None:
    db = AsyncPostgresqlDatabase("fastpeewee_contract", isolation_level="SERIALIZABLE")
    assert contract.isolation_level(db)
    assert not db._plain_begin()


def test_sqlite_lock_type_missing_fails_loudly() -> None:
    db = _without(AsyncSqliteDatabase(":memory:"), "_lock_type")
    with pytest.raises(PeeweeContractError, match=r"SqliteDatabase\._lock_type"):
        db._plain_begin()


def test_sqlite_lock_type_is_read() -> None:
    assert not AsyncSqliteDatabase(":memory:", lock_type="IMMEDIATE")._plain_begin()
    assert AsyncSqliteDatabase(":memory:")._plain_begin()


@pytest.mark.parametrize("name", ["_functions", "_aggregates", "_window_functions"])
def test_sqlite_functions_missing_fails_loudly(name: str) -> None:
    db = _without(AsyncSqliteDatabase(":memory:"), name)
    with pytest.raises(PeeweeContractError, match=rf"SqliteDatabase\.{name}"):
        db._reads_inline()


def test_sqlite_user_function_is_seen() -> None:
    db = AsyncSqliteDatabase(":memory:")
    assert db._reads_inline()
    db.register_function(lambda: 1, "one", 0)
    assert not db._reads_inline()


def test_query_database_missing_fails_loudly() -> None:
    from fastpeewee.compat._ops import database_of

    class Thing(peewee.Model):
        class Meta:
            database = None

    query = _without(Thing.select(), "_database")
    with pytest.raises(PeeweeContractError, match=r"ModelSelect\._database"):
        database_of(query)


def test_insert_rows_missing_fails_loudly() -> None:
    from fastpeewee.fast.bulk import is_multi_insert

    class Thing(peewee.Model):
        name = peewee.CharField()

        class Meta:
            database = None

    query = _without(Thing.insert_many([{"name": "a"}, {"name": "b"}]), "_insert")
    with pytest.raises(PeeweeContractError, match=r"ModelInsert\._insert"):
        is_multi_insert(query)


def test_playhouse_hstore_setting_is_read() -> None:
    from fastpeewee.compat.peewee_asyncext import PooledPostgresqlExtDatabase

    db = PooledPostgresqlExtDatabase("fastpeewee_contract", register_hstore=False)
    assert contract.registers_hstore(db) is False
    assert hasattr(contract.postgres_adapter(db), "register_hstore")
    with pytest.raises(PeeweeContractError, match=r"_register_hstore"):
        contract.registers_hstore(_without(db, "_register_hstore"))
    with pytest.raises(PeeweeContractError, match=r"PostgresqlExtDatabase\._adapter"):
        contract.postgres_adapter(_without(db, "_adapter"))


def test_load_tree_of_a_plain_select_is_empty() -> None:
    db = AsyncSqliteDatabase(":memory:")
    assert contract.unexecuted_on(peewee.Select().bind(db), db)


def test_meta_cache_names_are_fastpeewee_s() -> None:
    class Thing(peewee.Model):
        class Meta:
            database = None

    meta = Thing._meta
    assert contract.meta_cache(meta, "plans") is None
    contract.store_meta_cache(meta, "plans", {})
    assert contract.meta_cache(meta, "plans") == {}
    assert [name for name in vars(meta) if name.startswith("_fastpeewee_")] == [
        "_fastpeewee_plans"
    ]
