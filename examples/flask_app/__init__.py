"""The reference users-and-items app on Flask (sync views), with fastpeewee."""
