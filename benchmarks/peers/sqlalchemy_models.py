"""SQLAlchemy declarative models of the benchmark tables (imported only when that peer runs)."""

from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the benchmark models."""


class Item(Base):
    """A row of bench_item."""

    __tablename__ = "bench_item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    price: Mapped[int]
    quantity: Mapped[int]


class BulkItem(Base):
    """A row of bench_bulk."""

    __tablename__ = "bench_bulk"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    price: Mapped[int]
    quantity: Mapped[int]
