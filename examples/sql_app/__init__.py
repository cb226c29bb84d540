"""The FastAPI + Peewee tutorial's users-and-items app, on fastpeewee, with async endpoints.

Run it with ``make run`` (SQLite) or
``DATABASE_URL=postgresql://user:pw@host/db python -m uvicorn examples.sql_app.main:app``.
"""
