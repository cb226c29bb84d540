"""The peers, each a small adapter with one method per workload."""

from __future__ import annotations

from .base import Peer, Target
from .peewee_family import FastPeewee, PwAsyncio, SyncPeewee
from .raw import RawAiosqlite, RawAsyncpg
from .sqlalchemy_orm import SqlAlchemyOrm
from .tortoise_orm import TortoiseOrm

ORM_PEERS: list[type[Peer]] = [FastPeewee, PwAsyncio, SqlAlchemyOrm, TortoiseOrm, SyncPeewee]


def peers_for(target: Target) -> list[Peer]:
    """The raw driver of the target's backend first (the ratios' floor), then the ORMs."""
    raw = RawAiosqlite if target.backend == "sqlite" else RawAsyncpg
    return [cls(target) for cls in [raw, *ORM_PEERS]]


__all__ = ["Peer", "Target", "peers_for"]
