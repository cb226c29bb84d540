"""Every private peewee name fastpeewee relies on, in one place, checked.

peewee's underscore names carry no promise between releases. fastpeewee
reads (and in a few places writes) some of them: nothing outside this module
does. Each is resolved or probed once, when this module is imported, and a
missing one raises :class:`PeeweeContractError` naming peewee's version and
the name, instead of a default that silently changes behaviour (e.g. an
isolation level dropped from BEGIN). The accessors below are plain function
calls: the per-statement paths pay no ``getattr`` with messages.

fastpeewee also *mirrors* a few peewee functions (does what they do, faster,
or with a statement sent elsewhere). :data:`MIRRORS` lists them; the contract
test pins each one's source, so a peewee release that changes one fails one
named test saying which fastpeewee function to re-check.

``Model._meta`` and the documented ``Metadata`` attributes, ``Model.__data__``
and ``peewee.EXCEPTIONS``'s public name are not private and are used directly.

If a peewee release moves one of these names, this module is the one to change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Literal, NamedTuple, cast

import peewee

__all__ = [
    "CONNECTION_STATE_ATTRS",
    "DRIVER_ERRORS",
    "MIRRORS",
    "PEEWEE_VERSION",
    "PK_EXPR_METHOD",
    "PRIVATE_NAMES",
    "SAVE_STEP_METHODS",
    "STRING_FIELD",
    "TRANSACTION_HELPERS",
    "MetaCache",
    "Mirror",
    "PeeweeContractError",
    "PrivateName",
    "atomic_transaction_args",
    "build_ctx",
    "coerce_flag",
    "connect_sqlite",
    "converter_of",
    "cursor_wrapper",
    "dirty_names",
    "entity_path",
    "function_python_value",
    "get_pk",
    "has_limit",
    "has_user_functions",
    "insert_columns",
    "insert_rows",
    "isolation_level",
    "limit_for_first",
    "load_tree",
    "log_query",
    "meta_cache",
    "new_instance",
    "normalize_data",
    "notify_hooks",
    "on_conflict",
    "one_model_columns",
    "ordering_parts",
    "pk_expr",
    "plain_insert_result",
    "populate_unsaved_relations",
    "postgres_adapter",
    "prepare_insert",
    "probes",
    "prune_fields",
    "query_database",
    "query_limit",
    "registers_hstore",
    "related_objects",
    "returning",
    "returns_cursor",
    "returns_models",
    "run_commit_callbacks",
    "select_parts",
    "set_cursor_wrapper",
    "set_insert_rows",
    "set_mysql_server_version",
    "set_pk",
    "sort_key",
    "sqlite_lock_type",
    "store_meta_cache",
    "transaction_begin",
    "transaction_begin_args",
    "unexecuted_on",
    "with_select_parts",
]

PEEWEE_VERSION: str = str(vars(peewee).get("__version__", "(unknown version)"))
"""The installed peewee's version, named in every contract error."""

_SUPPORTED = "peewee>=4.5,<5"


class PeeweeContractError(peewee.ImproperlyConfigured):
    """A private peewee name fastpeewee relies on is missing or changed shape.

    Raised at import (``import fastpeewee``) or by the accessor that reads the
    name; the message names peewee's version and the name. The way out: a
    peewee release fastpeewee was tested with, or a fastpeewee that knows
    this peewee.
    """


def _missing(owner: Any, name: str) -> PeeweeContractError:
    where = owner.__name__ if isinstance(owner, (type, ModuleType)) else type(owner).__name__
    return PeeweeContractError(
        f"fastpeewee relies on peewee's private {where}.{name}, which peewee "
        f"{PEEWEE_VERSION} does not have; install a peewee fastpeewee supports "
        f"({_SUPPORTED}, tested with 4.5) or upgrade fastpeewee"
    )


# -- the registry ----------------------------------------------------------------

Kind = Literal["method", "property", "class attribute", "instance attribute", "module attribute"]


class PrivateName(NamedTuple):
    """One private peewee name this module uses, and the shape it must have.

    ``signature`` (methods only) is ``str(inspect.signature(...))`` as of peewee 4.5.
    """

    owner: Any  # a peewee class, or the peewee module for module attributes
    name: str
    kind: Kind
    signature: str | None = None


_NAMES: list[PrivateName] = []


def _lookup(owner: Any, name: str) -> Any:
    """``name`` as defined on ``owner`` or a base class, without running descriptors."""
    for klass in owner.__mro__ if isinstance(owner, type) else (owner,):
        found = vars(klass).get(name, _ABSENT)
        if found is not _ABSENT:
            return found
    raise _missing(owner, name)


_ABSENT: Any = object()


def _resolve(owner: Any, name: str, kind: Kind, signature: str | None = None) -> Any:
    """Register a class-level (or module-level) private name and return it, checked."""
    _NAMES.append(PrivateName(owner, name, kind, signature))
    found = _lookup(owner, name)
    if kind == "method" and not callable(found) and not isinstance(found, classmethod):
        raise _missing(owner, name)
    if kind == "property" and not isinstance(found, property):
        raise _missing(owner, name)
    return found


def _instance_attr(owner: type, *names: str) -> None:
    """Register attributes peewee sets on instances of ``owner`` (probed below)."""
    _NAMES.extend(PrivateName(owner, name, "instance attribute") for name in names)


# -- errors ------------------------------------------------------------------------

DRIVER_ERRORS = cast(
    dict[str, type[peewee.PeeweeException]], _resolve(peewee, "EXCEPTIONS", "module attribute")
)
"""Driver exception class name -> peewee exception class (``peewee.EXCEPTIONS``)."""


# -- databases: logging, hooks, connecting --------------------------------------------

_LOG_QUERY = _resolve(peewee.Database, "_log_query", "method", "(self, sql, params)")
_NOTIFY_HOOKS = _resolve(
    peewee.Database, "_notify_hooks", "method", "(self, sql, params, start, exc)"
)
_SQLITE_CONNECT = _resolve(peewee.SqliteDatabase, "_connect", "method", "(self)")
_SET_SERVER_VERSION = _resolve(
    peewee.MySQLDatabase, "_set_server_version", "method", "(self, conn)"
)


def log_query(db: Any, sql: str, params: Sequence[Any]) -> None:
    """Log a statement on the ``peewee`` logger, as peewee itself does."""
    _LOG_QUERY(db, sql, params)


def notify_hooks(
    db: Any, sql: str, params: Sequence[Any], start: float, exc: Exception | None
) -> None:
    """Call the database's ``query_hooks`` with a ``QueryEvent``."""
    _NOTIFY_HOOKS(db, sql, params, start, exc)


def connect_sqlite(db: peewee.SqliteDatabase) -> sqlite3.Connection:
    """Open a sqlite3 connection with the database's pragmas, functions and attachments."""
    conn: sqlite3.Connection = _SQLITE_CONNECT(db)
    return conn


def set_mysql_server_version(db: peewee.MySQLDatabase, version: str) -> None:
    """Record a MySQL/MariaDB server version as peewee's ``connect()`` does.

    Besides ``server_version``, peewee then knows whether the server accepts
    parenthesised compound-select members (MariaDB 10.4+, MySQL 8.0.22+).
    """
    _SET_SERVER_VERSION(db, _VersionInfo(version))


class _VersionInfo:
    """What peewee's ``_set_server_version`` reads from a connection."""

    def __init__(self, version: str) -> None:
        self.server_version = version


_instance_attr(peewee.PostgresqlDatabase, "_isolation_level")
_instance_attr(
    peewee.SqliteDatabase, "_lock_type", "_functions", "_aggregates", "_window_functions"
)


def isolation_level(db: peewee.PostgresqlDatabase) -> Any:
    """The isolation level given to ``PostgresqlDatabase(isolation_level=...)``, or None."""
    try:
        return vars(db)["_isolation_level"]
    except KeyError:
        raise _missing(db, "_isolation_level") from None


_instance_attr(peewee.PostgresqlDatabase, "_adapter")


def postgres_adapter(db: peewee.PostgresqlDatabase) -> Any:
    """peewee's driver adapter of a PostgreSQL database (psycopg 2 or 3), which
    e.g. registers HStore on a connection."""
    try:
        return vars(db)["_adapter"]
    except KeyError:
        raise _missing(db, "_adapter") from None


def registers_hstore(db: Any) -> bool:
    """The ``register_hstore=`` given to playhouse's ``PostgresqlExtDatabase``
    (playhouse is imported by whoever subclasses it, not here)."""
    try:
        return bool(vars(db)["_register_hstore"])
    except KeyError:
        raise _missing(db, "_register_hstore") from None


def sqlite_lock_type(db: peewee.SqliteDatabase) -> str | None:
    """The ``lock_type`` given to ``SqliteDatabase`` (BEGIN's DEFERRED/IMMEDIATE/...), or None."""
    try:
        lock_type: str | None = vars(db)["_lock_type"]
        return lock_type
    except KeyError:
        raise _missing(db, "_lock_type") from None


# The functions peewee itself registers on every SqliteDatabase (pure, quick).
_PEEWEE_SQLITE_FUNCTIONS = frozenset({"date_part", "date_trunc", "_pw_json_contains", "regexp"})


def has_user_functions(db: peewee.SqliteDatabase) -> bool:
    """True when SQL functions, aggregates or window functions of the user's are
    registered on ``db`` (peewee's own, such as ``date_part``, do not count)."""
    state = vars(db)
    try:
        functions = state["_functions"]
        aggregates = state["_aggregates"]
        windows = state["_window_functions"]
    except KeyError as exc:
        raise _missing(db, str(exc.args[0])) from None
    # Only playhouse's CySqliteDatabase has table functions: absent is "none".
    return bool(
        not functions.keys() <= _PEEWEE_SQLITE_FUNCTIONS
        or aggregates
        or windows
        or state.get("_table_functions")
    )


# -- transactions (peewee's context managers, subclassed by fastpeewee) ----------------


class _TransactionHelpers(NamedTuple):
    atomic: type[Any]
    transaction: type[Any]
    savepoint: type[Any]
    manual: type[Any]


TRANSACTION_HELPERS = _TransactionHelpers(
    _resolve(peewee, "_atomic", "module attribute"),
    _resolve(peewee, "_transaction", "module attribute"),
    _resolve(peewee, "_savepoint", "module attribute"),
    _resolve(peewee, "_manual", "module attribute"),
)
"""peewee's ``_atomic``, ``_transaction``, ``_savepoint`` and ``_manual`` classes
(what ``db.atomic()`` and friends return), for subclassing."""

_resolve(TRANSACTION_HELPERS.atomic, "_build_ctx", "method", "(self)")
_TRANSACTION_BEGIN = _resolve(TRANSACTION_HELPERS.transaction, "_begin", "method", "(self)")
_RUN_COMMIT_CALLBACKS = _resolve(peewee.Database, "_run_commit_callbacks", "method", "(self)")
_instance_attr(TRANSACTION_HELPERS.atomic, "_transaction_args")
_instance_attr(TRANSACTION_HELPERS.transaction, "_begin_args")


def build_ctx(ctx: Any) -> Any:
    """The context manager a transaction helper used as a decorator enters."""
    return ctx._build_ctx()


# What peewee keeps per connection in ``Database._state`` (a ``_ConnectionState``):
# fastpeewee's scopes stand in for it, so they carry exactly these.
CONNECTION_STATE_ATTRS = frozenset({"closed", "conn", "ctx", "transactions", "commit_callbacks"})
_CONNECTION_STATE = _resolve(peewee, "_ConnectionState", "module attribute")
_instance_attr(peewee.Database, "_state")


def atomic_transaction_args(ctx: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` an ``atomic(...)`` passes on to ``transaction(...)``."""
    args: tuple[tuple[Any, ...], dict[str, Any]] = ctx._transaction_args
    return args


def transaction_begin_args(ctx: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` a ``transaction(...)`` passes on to ``db.begin(...)``."""
    args: tuple[tuple[Any, ...], dict[str, Any]] = ctx._begin_args
    return args


def transaction_begin(ctx: Any) -> None:
    """Run a ``transaction(...)``'s BEGIN as its ``__enter__`` does."""
    ctx._begin()


def run_commit_callbacks(db: Any) -> None:
    """Run the callbacks ``db.on_commit`` registered, as a top-level commit does."""
    db._run_commit_callbacks()


PK_EXPR_METHOD = "_pk_expr"
"""The ``Model`` method building ``save``'s WHERE: a model overriding it takes peewee's path."""
SAVE_STEP_METHODS = ("_prune_fields", "_populate_unsaved_relations")
"""The ``Model`` methods ``save`` calls besides insert/update: a model overriding one
takes peewee's path (see ``fast.fastpath.can_save``)."""

# -- model instances ---------------------------------------------------------------------

_resolve(peewee.Model, "_pk", "property")
_resolve(peewee.Model, "_pk_expr", "method", "(self)")
prune_fields: Callable[[Any, dict[str, Any], Any], dict[str, Any]] = _resolve(
    peewee.Model, "_prune_fields", "method", "(self, field_dict, only)"
)
"""peewee's own ``Model._prune_fields(inst, field_dict, only)``: ``field_dict``
restricted to the fields ``only`` (names or fields), as ``save`` does. For models
that do not override it (the function itself, for speed: no wrapper call)."""

populate_unsaved_relations: Callable[[Any, dict[str, Any]], None] = _resolve(
    peewee.Model, "_populate_unsaved_relations", "method", "(self, field_dict)"
)
"""peewee's own ``Model._populate_unsaved_relations(inst, field_dict)``: fill in
foreign keys of related objects saved since they were assigned. For models that
do not override it."""
_resolve(peewee.Model, "_normalize_data", "method", "(cls, data, kwargs)")
# What Model.__init__ leaves on every instance (checked on a probe below).
_instance_attr(peewee.Model, "__data__", "_dirty", "__rel__")
_INSTANCE_ATTRS = frozenset({"__data__", "_dirty", "__rel__"})


def get_pk(inst: Any) -> Any:
    """The instance's primary-key value (``Model._pk``: ``get_id()`` of peewee's ``Model``)."""
    return inst._pk


def set_pk(inst: Any, value: Any) -> None:
    """Set the instance's primary-key value (``Model._pk``'s setter)."""
    inst._pk = value


def pk_expr(inst: Any) -> Any:
    """``primary_key == value``: the WHERE clause ``save`` and ``delete_instance`` use."""
    return inst._pk_expr()


def dirty_names(inst: Any) -> set[str]:
    """The instance's set of changed field names (mutable: ``save`` empties it)."""
    dirty: set[str] = inst._dirty
    return dirty


def related_objects(inst: Any) -> dict[str, Any]:
    """The related objects already loaded on the instance, by foreign-key name."""
    related: dict[str, Any] = inst.__rel__
    return related


_new = object.__new__


def new_instance(model: type[Any], data: dict[str, Any]) -> Any:
    """A ``model`` object holding ``data``, as ``Model(__no_default__=1, **data)``
    leaves it for a model with peewee's own ``__init__`` and plain fields.

    Mirrors ``Model.__init__`` (pinned by the contract test): ``__data__`` is
    the values, the dirty set and the related-object cache are empty.
    """
    obj = _new(model)
    obj.__data__ = data
    obj._dirty = set()
    obj.__rel__ = {}
    return obj


def normalize_data(model: type[Any], data: Any, kwargs: dict[str, Any]) -> Any:
    """``Model.update(data, **kwargs)``'s and ``insert``'s mapping of fields to values."""
    return model._normalize_data(data, kwargs)


# -- queries: any ---------------------------------------------------------------------

_instance_attr(peewee.BaseQuery, "_database", "_cursor_wrapper", "_row_type")
_GET_CURSOR_WRAPPER = _resolve(peewee.BaseQuery, "_get_cursor_wrapper", "method", "(self, cursor)")
_EXECUTES = (
    _resolve(peewee.SelectBase, "_execute", "method", "(self, database)"),
    _resolve(peewee.BaseModelSelect, "_execute", "method", "(self, database)"),
)
_resolve(peewee.BaseModelSelect, "_load_tree", "class attribute")
_MODEL_SELECT: Any = peewee.BaseModelSelect  # Any: isinstance() must not narrow the query
_resolve(peewee.BaseModelSelect, "_model_rows", "method", "(self)")


def query_database(query: Any) -> Any:
    """The database a query is bound to, or None."""
    try:
        return query._database
    except AttributeError:
        raise _missing(query, "_database") from None


def cursor_wrapper(query: Any, cursor: Any) -> Any:
    """The cursor wrapper ``query.execute()`` would build for ``cursor`` (rows as its row type)."""
    return query._get_cursor_wrapper(cursor)


def set_cursor_wrapper(query: Any, wrapper: Any) -> None:
    """Record ``wrapper`` as the query's result, as ``execute()`` leaves it."""
    query._cursor_wrapper = wrapper


def unexecuted_on(query: Any, db: Any) -> bool:
    """True when a select keeps peewee's own ``_execute`` (run, wrap, cache), is bound
    to ``db``, is not yet executed and loads no relations (``with_related``)."""
    return (
        type(query)._execute in _EXECUTES
        and query._database is db
        and query._cursor_wrapper is None
        and not (isinstance(query, _MODEL_SELECT) and query._load_tree)
    )


# -- queries: selects ------------------------------------------------------------------

# Attributes of a ModelSelect that do not change the SQL (row type, the database
# it runs on) or that select_parts() returns.
_SELECT_READ = frozenset(
    {
        "_where",
        "_order_by",
        "_limit",
        "_offset",
        "_returning",
        "_from_list",
        "_join_ctx",
        "_is_default",
        "model",
        "_database",
        "_cursor_wrapper",
        "_hash",
        "_row_type",
        "_constructor",
    }
)
# Attributes that must keep their default (None; an empty dict for _joins).
_SELECT_UNSET = frozenset(
    {
        "_alias",
        "_cte_list",
        "_distinct",
        "_for_update",
        "_group_by",
        "_having",
        "_lateral",
        "_simple_distinct",
        "_windows",
    }
)
_instance_attr(peewee.ModelSelect, *sorted(_SELECT_READ - {"model", "_constructor"}))
_instance_attr(peewee.ModelSelect, *sorted(_SELECT_UNSET), "_joins")
_ORDERING_ATTRS = frozenset({"node", "_coerce", "_converter", "direction", "collation", "nulls"})
_instance_attr(peewee.Ordering, "_coerce", "_converter")

SelectParts = tuple[Any, Any, Any, Any, Any, bool]
"""``(where, order_by, limit, offset, columns, is_default)`` of a plain select."""


_SELECT_KNOWN = _SELECT_READ | _SELECT_UNSET | {"_joins"}
_SELECT_UNSET_NAMES = tuple(sorted(_SELECT_UNSET))


def select_parts(query: Any) -> SelectParts | None:
    """The parts of a ``ModelSelect`` of one model's own table with nothing else set
    (no join, GROUP BY, DISTINCT, CTE, window, ...), or None."""
    attrs = vars(query)
    if not attrs.keys() <= _SELECT_KNOWN:  # an attribute this does not know of
        return None
    get = attrs.get
    for name in _SELECT_UNSET_NAMES:
        if get(name) is not None:
            return None
    if get("_joins"):
        return None
    model = query.model
    from_list = attrs["_from_list"]
    if len(from_list) != 1 or from_list[0] is not model or attrs["_join_ctx"] is not model:
        return None
    return (
        attrs["_where"],
        attrs["_order_by"],
        attrs["_limit"],
        attrs["_offset"],
        attrs["_returning"],
        attrs["_is_default"],
    )


def limit_for_first(query: Any, n: int) -> None:
    """What ``SelectBase.first(n)`` does to the query before reading: LIMIT ``n``,
    and a result read under another LIMIT forgotten (mirrors ``SelectBase.first``)."""
    if query._limit != n:
        query._limit = n
        query._cursor_wrapper = None


def has_limit(query: Any) -> bool:
    """True when a select has a LIMIT of its own (``limit()``, ``paginate()``, ...)."""
    return getattr(query, "_limit", None) is not None


def with_select_parts(query: Any, where: Any, limit: Any, offset: Any) -> Any:
    """A clone of ``query`` with its WHERE, LIMIT and OFFSET replaced (None: keep)."""
    clone = query.clone()
    if where is not None:
        clone._where = where
    if limit is not None:
        clone._limit = limit
    if offset is not None:
        clone._offset = offset
    return clone


def ordering_parts(item: Any) -> tuple[Any, Any, Any, Any, Any] | None:
    """``(node, direction, collation, nulls, coerce)`` of a plain ``Ordering``, or None
    when it carries a converter or anything else."""
    attrs = vars(item)
    if attrs.keys() != _ORDERING_ATTRS or attrs["_converter"] is not None:
        return None
    return attrs["node"], attrs["direction"], attrs["collation"], attrs["nulls"], attrs["_coerce"]


def one_model_columns(query: Any) -> Any:
    """The selected columns of a ``ModelSelect`` from one source, without joins, its
    row type left unset; None for any other select."""
    attrs = vars(query)
    if attrs["_row_type"] is None and len(attrs["_from_list"]) == 1 and not attrs["_joins"]:
        return attrs["_returning"]
    return None


def returning(query: Any) -> Any:
    """A select's columns, or a write query's RETURNING columns (None: unset)."""
    return query._returning


def query_limit(query: Any) -> int | None:
    """The LIMIT set on a select query, if any."""
    limit: int | None = query._limit
    return limit


def load_tree(query: Any) -> tuple[Any, ...]:
    """The ``Load`` nodes already set on a query by ``with_related``."""
    return tuple(query._load_tree or ())


def returns_models(query: Any) -> bool:
    """True when a model select hydrates model instances (not dicts or tuples)."""
    return bool(query._model_rows())


# -- queries: inserts -----------------------------------------------------------------

_instance_attr(
    peewee.ModelInsert, "_insert", "_columns", "_on_conflict", "_as_rowcount", "_return_cursor"
)
_resolve(peewee.Insert, "_query_type", "property")
_resolve(peewee.Insert, "_pk_returning", "method", "(self)")


def insert_rows(query: Any) -> Any:
    """What an insert inserts: a mapping (one row), rows, or a query (INSERT ... SELECT)."""
    try:
        return query._insert
    except AttributeError:
        raise _missing(query, "_insert") from None


def set_insert_rows(query: Any, rows: Any) -> None:
    """Replace the rows of an insert (e.g. a generator by the list it gave)."""
    query._insert = rows


def insert_columns(query: Any) -> Any:
    """The columns given to ``insert_many(..., fields=)``, or None."""
    return query._columns


def on_conflict(query: Any) -> Any:
    """The insert's ``OnConflict`` clause, or None."""
    return query._on_conflict


def returns_cursor(query: Any) -> bool:
    """True when a write query's ``returning(...)`` makes it return its cursor."""
    return bool(query._return_cursor)


def plain_insert_result(query: Any) -> bool:
    """True when an insert's result is read as peewee reads a single-row insert's:
    no ``returning(...)`` cursor, no ``as_rowcount()``, no row type of its own."""
    return bool(
        not query._return_cursor
        and not query._as_rowcount
        and query._row_type is None
        and query._query_type == peewee.Insert.SIMPLE
    )


def prepare_insert(query: Any, db: Any) -> Any:
    """Do what ``Insert._execute`` does before running: return the new primary key
    (``RETURNING``) when the database supports it. Mirrors ``Insert._execute``."""
    if query._returning is None and db.returning_clause:
        returned = query._pk_returning()
        if returned:
            query._returning = returned
            query._row_type = peewee.ROW.TUPLE
    return query


# -- fields and expression nodes --------------------------------------------------------

STRING_FIELD: type[peewee.Field] = _resolve(peewee, "_StringField", "module attribute")
"""peewee's base of ``CharField`` and ``TextField`` (whose ``adapt`` returns a str)."""

_instance_attr(peewee.Field, "_sort_key")
_instance_attr(peewee.Function, "_coerce", "_python_value")
_instance_attr(peewee.Alias, "_coerce", "_converter")  # a WrappedNode
_instance_attr(peewee.Entity, "_path")
_resolve(peewee.Node, "_coerce", "class attribute")
_resolve(peewee.ColumnBase, "_converter", "class attribute")


def sort_key(field: Any) -> Any:
    """The key peewee orders an insert's columns by (primary key first, then definition)."""
    return field._sort_key


def coerce_flag(node: Any) -> Any:
    """The node's ``coerce`` flag as set (truthy: peewee converts its values with a
    field's ``python_value``)."""
    return node._coerce


def converter_of(node: Any) -> Any:
    """The converter set on a node with ``.converter(...)``, or None."""
    return node._converter


def function_python_value(node: Any) -> Any:
    """The ``python_value=`` given to ``fn.X(...)``, or None."""
    return node._python_value


def entity_path(node: Any) -> Sequence[str]:
    """The dotted name parts of an ``Entity`` (``schema.table.column``)."""
    path: Sequence[str] = node._path
    return path


# -- fastpeewee's own state on peewee objects ------------------------------------------

MetaCache = Literal["plans", "layouts", "relations", "schema_plans"]
"""The caches fastpeewee keeps per model on its ``_meta`` (a ``peewee.Metadata``)."""

_META_ATTRS: dict[str, str] = {
    "plans": "_fastpeewee_plans",  # fast.fastpath: compiled statements
    "layouts": "_fastpeewee_layouts",  # fast.rows: select column layouts
    "relations": "_fastpeewee_relations",  # schema: relations a schema reads
    "schema_plans": "_fastpeewee_schema_plans",  # schema: afetch plans
}


def meta_cache(meta: Any, name: MetaCache) -> Any:
    """The cache ``name`` kept on a model's ``_meta``, or None before the first store.

    Kept on the model rather than in a module-level table keyed by it, so
    that entries may hold the model's fields and queries; each model class
    has its own ``_meta`` and peewee's ``Metadata`` takes new attributes.
    """
    return getattr(meta, _META_ATTRS[name], None)


def store_meta_cache(meta: Any, name: MetaCache, cache: Any) -> None:
    """Keep ``cache`` as the cache ``name`` on a model's ``_meta``."""
    setattr(meta, _META_ATTRS[name], cache)


# -- mirrors -----------------------------------------------------------------------


class Mirror(NamedTuple):
    """A peewee function whose logic fastpeewee repeats, and where."""

    peewee: str  # qualified name in the peewee module, e.g. "Model.save"
    mirrored_by: str  # the fastpeewee function to re-check when it changes


MIRRORS: tuple[Mirror, ...] = (
    Mirror("Model.save", "fastpeewee.fast.fastpath.save"),
    Mirror("Model.__init__", "fastpeewee.contracts.peewee.new_instance"),
    Mirror("Model.delete_instance", "fastpeewee.compat._ops.delete"),
    Mirror("Model.get_by_id", "fastpeewee.fast.fastpath.get_by_id_plan"),
    Mirror("Model.select", "fastpeewee.compat._aio_model.AioModel.select"),
    Mirror("Model.update", "fastpeewee.compat._aio_model.AioModel.update"),
    Mirror("Model.insert", "fastpeewee.compat._aio_model.AioModel.insert"),
    Mirror("Model.insert_many", "fastpeewee.compat._aio_model.AioModel.insert_many"),
    Mirror("Model.insert_from", "fastpeewee.compat._aio_model.AioModel.insert_from"),
    Mirror("Insert._generate_insert", "fastpeewee.fast.bulk._columns_of"),
    Mirror("Insert._execute", "fastpeewee.contracts.peewee.prepare_insert"),
    Mirror("Insert.handle_result", "fastpeewee.fast.fastpath._returned_pk_converter"),
    Mirror("Database.last_insert_id", "fastpeewee.fast.fastpath._returned_pk_converter"),
    Mirror("BaseModelSelect.get", "fastpeewee.fast.selects.aget"),
    Mirror("SelectBase.first", "fastpeewee.contracts.peewee.limit_for_first"),
    Mirror("SelectBase.peek", "fastpeewee.fast.selects.afirst"),
    Mirror("BaseQuery._execute", "fastpeewee.fast.selects.aexecute_select"),
    Mirror("_ModelQueryHelper._get_cursor_wrapper", "fastpeewee.fast.rows.model_rows"),
    Mirror("ModelSelect._get_model_cursor_wrapper", "fastpeewee.fast.rows.model_rows"),
    Mirror("_resolve_model_columns", "fastpeewee.fast.rows._column_key"),
    Mirror("ModelObjectCursorWrapper.process_row", "fastpeewee.fast.rows.ModelRows.process_row"),
    Mirror("CursorWrapper.iterate", "fastpeewee.fast.rows.ModelRows.all_rows"),
    Mirror("ExceptionWrapper.__exit__", "fastpeewee.errors.wrap_driver_error"),
    Mirror("Database.push_transaction", "fastpeewee.transactions._stack"),
    Mirror("Database.pop_transaction", "fastpeewee.transactions._stack"),
    Mirror("Database.transaction_depth", "fastpeewee.transactions._stack"),
    Mirror("Database.top_transaction", "fastpeewee.transactions._stack"),
    Mirror(
        "Database._clear_commit_callbacks", "fastpeewee.transactions.async_transaction.arollback"
    ),
)
"""Each peewee function fastpeewee mirrors; the contract test pins their source."""


# -- the probe: instance attributes, checked once at import ----------------------------


def probes() -> dict[type, Any]:
    """A fresh instance of each peewee class whose instance attributes the contract reads.

    Builds a throwaway model (bound to no database) and queries on it; opens nothing.
    """

    class Probe(peewee.Model):
        name = peewee.CharField()

        class Meta:
            database = None

    return {
        peewee.Model: Probe(name="probe"),
        peewee.BaseQuery: Probe.select(),
        peewee.ModelSelect: Probe.select(),
        peewee.ModelInsert: Probe.insert_many([{"name": "probe"}]),
        peewee.Ordering: Probe.name.desc(),
        peewee.Field: Probe.name,
        peewee.Function: peewee.fn.LOWER(Probe.name),
        peewee.Alias: Probe.name.alias("probe"),
        peewee.Entity: peewee.Entity("probe", "name"),
        peewee.Database: peewee.SqliteDatabase(None),
        peewee.SqliteDatabase: peewee.SqliteDatabase(None),
        peewee.PostgresqlDatabase: peewee.PostgresqlDatabase(None),
        TRANSACTION_HELPERS.atomic: TRANSACTION_HELPERS.atomic(peewee.SqliteDatabase(None)),
        TRANSACTION_HELPERS.transaction: TRANSACTION_HELPERS.transaction(
            peewee.SqliteDatabase(None)
        ),
    }


def _check_instance_attributes() -> None:
    found = probes()
    for entry in _NAMES:
        if entry.kind == "instance attribute" and entry.name not in vars(found[entry.owner]):
            raise _missing(entry.owner, entry.name)
    if vars(_CONNECTION_STATE()).keys() != CONNECTION_STATE_ATTRS:
        raise _missing(_CONNECTION_STATE, f"attributes {sorted(CONNECTION_STATE_ATTRS)}")
    if vars(found[peewee.Model]).keys() != _INSTANCE_ATTRS:  # new_instance() builds these
        extra = sorted(vars(found[peewee.Model]).keys() - _INSTANCE_ATTRS)
        raise _missing(peewee.Model, f"__init__ (it now also sets {extra})")


_check_instance_attributes()

PRIVATE_NAMES: tuple[PrivateName, ...] = tuple(_NAMES)
"""Every private peewee name this module uses, with the shape it must have."""
