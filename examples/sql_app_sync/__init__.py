"""The tutorial's app with plain ``def`` endpoints, on the same fastpeewee database class.

FastAPI runs these endpoints in its threadpool; fastpeewee's middleware gives
each request one connection that its threads share. No monkey-patching of
peewee's state is needed. Models, schemas and password hashing are shared with
:mod:`examples.sql_app`.
"""
