"""The ASGI application object, for `uvicorn gateway.asgi:app`.

`python -m gateway` also ends open card streams as soon as it starts to shut
down; served this way they end when their clients hang up, or when the
server's graceful shutdown times out (uvicorn: --timeout-graceful-shutdown).
"""

from gateway.app import create_app

app = create_app()
