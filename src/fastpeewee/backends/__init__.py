"""The database classes, one per backend.

Each configures its drivers (see :mod:`fastpeewee.drivers`) under
:class:`~fastpeewee.database.AsyncDatabase`.
"""
