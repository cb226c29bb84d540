"""Driver adapters: one module per server protocol.

Each wraps its drivers in the :class:`~fastpeewee.drivers.base.Connection`
contract. Nothing here knows about databases, pools or tasks.
"""
