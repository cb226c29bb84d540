"""Which statements leave state on a connection's session.

A pooled connection serves many owners in turn. Most statements leave nothing
behind once their transaction ends, but some change the *session*: ``SET
TIME ZONE``, a temporary table, ``LISTEN``, an advisory or ``GET_LOCK`` lock,
a MySQL user variable, ``PRAGMA x = y``, ``ATTACH``. A connection that ran one
is marked *dirty* and closed when it goes back to the pool instead of being
handed to the next owner, who therefore always starts from a fresh session.

The test is on the statement's text, conservative and cached: anything not
known to be harmless counts as changing the session, and costs one reconnect.
Transaction-scoped forms (``SET LOCAL``, ``SET TRANSACTION``,
``pg_advisory_xact_lock``, ``NOTIFY``) do not. A script (``SELECT 1; SET ...``:
asyncpg, psycopg and asyncmy run every statement of one) is harmless only when
each of its statements is, and naming a temporary schema (``pg_temp.t``,
SQLite's ``temp.t``) counts as creating temporary state.
"""

from __future__ import annotations

import functools
import re

__all__ = ["changes_session"]

# Statements whose effects end with their transaction (or are schema changes
# every session sees anyway), unless a marker below says otherwise.
_HARMLESS = frozenset(
    {
        "SELECT", "WITH", "VALUES", "TABLE", "INSERT", "UPDATE", "DELETE", "REPLACE",
        "MERGE", "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE",
        "COPY", "EXPLAIN", "SHOW", "DESCRIBE", "DESC", "CREATE", "ALTER", "DROP",
        "TRUNCATE", "RENAME", "COMMENT", "ANALYZE", "VACUUM", "REINDEX", "OPTIMIZE",
        "GRANT", "REVOKE", "NOTIFY", "CHECKSUM",
    }
)  # fmt: skip
_FIRST_WORD = re.compile(r"[\s(]*([A-Za-z]+)")
# Session state reached from inside an ordinary statement, or a temporary
# schema named explicitly: PostgreSQL's pg_temp (also "pg_temp", pg_temp_3) and
# SQLite's temp (temp.t, "temp".t, [temp].t). Searched in the whole text.
_MARKERS = re.compile(
    r"set_config|advisory_lock|get_lock|:=|into\s+@|into\s+temp(orary)?\b|dblink_connect"
    r"|pg_temp|\btemp\b[\"`\]]?\s*\.",
    re.IGNORECASE,
)
_CREATE_TEMP = re.compile(
    r"\s*CREATE\s+(OR\s+REPLACE\s+)?((GLOBAL|LOCAL)\s+)?TEMP(ORARY)?\b", re.IGNORECASE
)
_TRANSACTION_SET = re.compile(r"\s*SET\s+(LOCAL|TRANSACTION|CONSTRAINTS)\b", re.IGNORECASE)
# PRAGMA name(arg) forms that only read.
_READING_PRAGMAS = frozenset(
    {
        "table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
        "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check",
        "table_list", "function_list", "pragma_list", "database_list", "collation_list",
        "compile_options", "module_list",
    }
)  # fmt: skip


# Statements longer than this (multi-row INSERTs) are classified each time
# rather than kept in the cache, which would otherwise hold megabytes of SQL.
CACHED_LENGTH = 4096


def changes_session(sql: str) -> bool:
    """True when ``sql`` may leave state on the session that outlives its transaction.

    Examples::

        changes_session("SELECT * FROM t WHERE id = %s")   # False
        changes_session("SET TIME ZONE 'UTC'")              # True
        changes_session("SET LOCAL statement_timeout = 5")  # False
        changes_session("CREATE TEMP TABLE t (id int)")     # True
    """
    if len(sql) <= CACHED_LENGTH:
        return _cached(sql)
    return _classify(sql)


def _classify(sql: str) -> bool:
    if _MARKERS.search(sql):
        return True
    return any(_statement_changes(statement) for statement in _statements(sql))


def _statements(sql: str) -> list[str]:
    """The statements of a script, cut at every ``;``.

    A ``;`` inside a string literal is cut too: the piece after it then starts
    mid-literal, reads as an unknown statement and counts as changing the
    session, a reconnect too many but never a leak. Each real statement still
    starts a piece, so none escapes the test of its first words.
    """
    if ";" not in sql:
        return [sql]
    return [part for part in sql.split(";") if part.strip()] or [sql]


def _statement_changes(sql: str) -> bool:
    found = _FIRST_WORD.match(sql)
    if found is None:
        return True
    word = found[1].upper()
    if word == "SET":
        return _TRANSACTION_SET.match(sql) is None
    if word == "PRAGMA":
        return _pragma_sets(sql)
    if word == "CREATE" and _CREATE_TEMP.match(sql):
        return True
    return word not in _HARMLESS  # LISTEN, PREPARE, DECLARE, ATTACH, USE, DO, CALL, ...


# Bounded: at most 2048 statements of at most CACHED_LENGTH characters each.
_cached = functools.lru_cache(maxsize=2048)(_classify)


def _pragma_sets(sql: str) -> bool:
    """``PRAGMA x = y`` and ``PRAGMA x(y)`` set; ``PRAGMA x`` and ``PRAGMA table_info(t)`` read."""
    head = sql.split(";", 1)[0]
    if "=" in head:
        return True
    if "(" not in head:
        return False
    name = head.split("(", 1)[0].split()[-1].lower()
    return name.rsplit(".", 1)[-1] not in _READING_PRAGMAS
