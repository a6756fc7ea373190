"""Exports: a court-ready evidence package (zip) of recordings the caller may see.

The package is built in ``api.state_dir/exports`` under a random name, sent, and deleted once
sent (or when building fails); its ``exported`` event is in the chain before the first byte
(``package.export_recordings``). A package is a copy: the archive keeps the evidence.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from ...errors import UsageError
from ..auth import Action, User
from ..bodies import ExportBody
from ..gate import Node, Remote, require
from . import API
from ...i18n import _

router = APIRouter(prefix=API, tags=["exports"])


@router.post("/exports", responses={200: {"content": {"application/zip": {}}}})
def export(node: Node, user: Annotated[User, Depends(require(Action.EXPORT))], remote: Remote,
           body: ExportBody) -> Response:
    from ..package import export_recordings

    if len(body.recordings) > node.config.api.max_export_recordings:
        raise UsageError(_("recordings: at most {max_export_recordings} per package").format(
            max_export_recordings=node.config.api.max_export_recordings))
    ids = [node.catalog.visible(user, recording_id)["sha256"]
           for recording_id in body.recordings]
    node.exports_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = node.exports_dir / f"{secrets.token_hex(16)}.zip"
    try:
        info = export_recordings(
            node.store, node.database, node.ledger, node.index_own, ids, out,
            reason=body.reason, actor=user.actor, include_proxies=body.include_proxies,
            remote=remote, clock=node.clock, signing_key=node.private_key)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return FileResponse(out, media_type="application/zip",
                        filename=f"evidence-{info.package_id[:12]}.zip",
                        background=BackgroundTask(out.unlink, missing_ok=True))
