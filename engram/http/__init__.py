"""The HTTP API: a stateless gateway speaking JSON over HTTP to engines over NATS.

``engram http --listen 127.0.0.1:8080 --keys keys.json`` runs it (``engram serve --http ADDR
--http-keys PATH`` runs it beside the engine). Needs the ``http`` extra (FastAPI, uvicorn).
"""

from engram.http.app import McpMount, create_app
from engram.http.gateway import Gateway
from engram.http.keys import ApiKey, KeyFile, KeyRing
from engram.http.server import prepare_gateway, run_prepared

__all__ = [
    "ApiKey",
    "Gateway",
    "KeyFile",
    "KeyRing",
    "McpMount",
    "create_app",
    "prepare_gateway",
    "run_prepared",
]
