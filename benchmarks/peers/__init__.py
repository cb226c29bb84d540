"""The peers, each a small adapter with one method per workload."""

from __future__ import annotations

from .base import Peer, Target
from .peewee_family import FastPeewee, FastPeeweePrepared, PwAsyncio, SyncPeewee
from .raw import RawAiosqlite, RawAsyncpg
from .raw_mysql import RawAiomysql, RawAsyncmy
from .sqlalchemy_orm import SqlAlchemyOrm
from .tortoise_orm import TortoiseOrm

# fastpeewee twice: its usual calls, then with db.prepare for the reads.
ORM_PEERS: list[type[Peer]] = [
    FastPeewee,
    FastPeeweePrepared,
    PwAsyncio,
    SqlAlchemyOrm,
    TortoiseOrm,
    SyncPeewee,
]


def peers_for(target: Target) -> list[Peer]:
    """The raw driver of the target's backend first (the ratios' floor), then the ORMs.

    On MariaDB both raw drivers run: asyncmy (the floor, what fastpeewee's tasks
    use) and aiomysql (what playhouse.pwasyncio's MySQL class uses).
    """
    floors: dict[str, list[type[Peer]]] = {
        "sqlite": [RawAiosqlite],
        "postgres": [RawAsyncpg],
        "mysql": [RawAsyncmy, RawAiomysql],
    }
    raws = floors[target.backend]
    return [cls(target) for cls in [*raws, *ORM_PEERS]]


__all__ = ["Peer", "Target", "peers_for"]
