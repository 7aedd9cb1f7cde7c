"""The HTTP API's names the agent page needs (statuses, the active ones, directions), served
as a small script made from the vocabulary so the page holds no copy of them."""

from __future__ import annotations

import hashlib
import json

import falcon
import falcon.asgi

from vocabulary import ACTIVE_STATUSES, DIRECTION, STATUS

AGENT_VOCABULARY_PATH = "/agent/vocabulary.js"
MEDIA_JS = "text/javascript; charset=utf-8"


def script() -> bytes:
    names = {
        "statuses": list(STATUS.names),
        "activeStatuses": list(ACTIVE_STATUSES),
        "directions": list(DIRECTION.names),
    }
    return (
        "// Made by the gateway from the telephony.v1 protos; agent.js reads it.\n"
        f"window.VATS_VOCABULARY = Object.freeze({json.dumps(names)});\n"
    ).encode()


class AgentVocabularyResource:
    """The script, the same for the process's whole life: browsers keep it and revalidate."""

    def __init__(self) -> None:
        self._data = script()
        self._etag = hashlib.sha256(self._data).hexdigest()[:32]

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.etag = self._etag
        # Names change only with a new gateway; asking each time costs a 304.
        resp.cache_control = ["no-cache"]
        held = req.if_none_match or ()
        if "*" in held or self._etag in held:
            resp.status = falcon.HTTP_304
            return
        resp.content_type = MEDIA_JS
        resp.data = self._data
