"""Contracts with foreign private surfaces.

Every private name of peewee (and asyncpg) that fastpeewee uses is reached
through these modules, which fail loudly when a release moves one.
"""
