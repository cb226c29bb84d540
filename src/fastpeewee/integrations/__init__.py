"""Integrations with web frameworks: the ASGI middleware (framework-neutral) and FastAPI."""
