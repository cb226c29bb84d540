"""The users-and-items app of examples/sql_app on Litestar.

Run it with ``python -m uvicorn examples.litestar_app.main:app`` (SQLite by
default; ``DATABASE_URL`` picks another database).
"""
