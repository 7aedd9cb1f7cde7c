"""The ASGI application object, for `uvicorn gateway.asgi:app`."""

from gateway.app import create_app

app = create_app()
