"""The users-and-items app of examples/sql_app on plain Starlette (no FastAPI).

Run it with ``python -m uvicorn examples.starlette_app.main:app`` (SQLite by
default; ``DATABASE_URL`` picks another database).
"""
