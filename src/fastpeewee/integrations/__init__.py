"""Integrations with web frameworks.

``core`` holds what every adapter shares and imports no framework; ``asgi`` and
``wsgi`` are the framework-neutral middlewares; each other module adapts one
framework (and is the only one importing it).
"""
