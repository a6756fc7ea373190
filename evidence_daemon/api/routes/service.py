"""Routes about the node and the caller: health, metrics, the OpenAPI schema, ``/me``.

``/healthz`` and ``/metrics`` answer without a token (probes and Prometheus); they show counts
and chain health, never a recording or a user.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..auth import Action, User
from ..bodies import Me
from ..gate import CatalogPoller, Node, require
from . import API

router = APIRouter()


@router.get("/healthz", tags=["service"])
def healthz(node: Node, poller: CatalogPoller) -> dict[str, Any]:
    return {"status": "ok", "writer": node.writer,
            "catalog": {**node.catalog.stats(), "last_poll": node.indexer.last_poll_at,
                        "last_error": poller.last_error}}


@router.get("/metrics", include_in_schema=False)
def metrics(node: Node) -> Response:
    # For Prometheus, like /healthz without a token: counters and this node's chain health.
    return Response(generate_latest(node.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(f"{API}/openapi.json", include_in_schema=False,
            dependencies=[Depends(require(Action.ME))])
def openapi(request: Request) -> dict[str, Any]:
    schema: dict[str, Any] = request.app.openapi()
    return schema


@router.get(f"{API}/me", response_model=Me, tags=["session"])
def me(user: Annotated[User, Depends(require(Action.ME))]) -> Me:
    return Me(name=user.name, role=user.role, officer_id=user.officer_id)
