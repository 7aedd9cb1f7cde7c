"""The ASGI application object, for `uvicorn gateway.asgi:app`.

`python -m gateway` also ends open card streams as soon as it starts to shut
down; served this way they end when their clients hang up, or when the
server's graceful shutdown times out (uvicorn: --timeout-graceful-shutdown).
Served this way, pass uvicorn `--no-server-header` too, or every answer names
the server software.
"""

from gateway.app import create_app

app = create_app()
