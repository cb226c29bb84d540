"""The sync (WSGI) frameworks: Flask, Django, Bottle, Falcon, Pyramid, CherryPy."""
