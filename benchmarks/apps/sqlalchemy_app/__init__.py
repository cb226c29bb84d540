"""FastAPI's SQL tutorial app on SQLAlchemy 2's asyncio ORM: the H1-H3 baseline.

Same routes, JSON and password hashing as examples/sql_app (fastpeewee), so the
two can be loaded side by side: ``uvicorn benchmarks.apps.sqlalchemy_app.main:app``
with ``DATABASE_URL=postgresql://user@host:port/db``.
"""
