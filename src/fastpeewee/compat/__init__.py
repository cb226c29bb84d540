"""Compatibility layers for code written against other async peewee libraries.

- :mod:`fastpeewee.compat.peewee_async`: the ``Manager`` API, the module-level
  functions, the database classes and ``AioModel`` of peewee-async 0.6-0.12;
- :mod:`fastpeewee.compat.peewee_asyncext`: its PostgreSQL extension classes
  (JSONB, HStore).

Old code keeps its spelling by aliasing the module::

    import fastpeewee.compat.peewee_async as peewee_async
"""
