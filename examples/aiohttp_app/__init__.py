"""The users-and-items app of ``examples.sql_app`` on aiohttp: the same routes, status
codes, models, schemas and queries, with fastpeewee's aiohttp middleware.

Run it with ``python -m examples.aiohttp_app --port 8000`` (SQLite by default;
``DATABASE_URL`` picks another database, as for ``examples.sql_app``).
"""
