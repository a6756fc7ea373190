"""Who is asking, and may they: the FastAPI dependencies every route but ``/healthz`` and
``/metrics`` starts with.

``current_user`` resolves the bearer token (``Gate``: failed sign-ins counted per client and
per token label, then 429); ``require(Action.X)`` is the dependency that refuses a role the
matrix (``auth.PERMISSIONS``) does not allow. The node and the client's address reach routes
the same way, so a route never reads ``app.state`` itself. What must never happen: a route
that runs before its caller is resolved and authorised, a valid token refused for another
client's failures, or a token written to the log.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import AccessError
from .auth import Action, FailedLogins, User, allowed, token_label
from .clients import client_address, trusted_networks
from .service import ApiNode, Poller
from ..i18n import _

log = logging.getLogger(__name__)


class Unauthorized(Exception):
    """No (acceptable) credentials: 401, or 429 with ``Retry-After`` while throttled."""

    def __init__(self, message: str, status: int = 401, retry_after_s: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s


bearer = HTTPBearer(auto_error=False, description="a token from `evidence-daemon users add`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class Gate:
    """Resolves a token to a user. Failed sign-ins are counted twice, and either count past
    ``api.failed_login_limit`` answers 429: per client address (seen through the trusted
    proxies: a brute force from one client is throttled, the other users behind the same
    proxy are not) and per token label (a leaked or revoked token replayed from many
    addresses). A valid token is refused only for its client's failures, never for its label's.
    """

    def __init__(self, node: ApiNode) -> None:
        limit = node.config.api.failed_login_limit
        window_s = node.config.api.failed_login_window_s
        self.node = node
        self.by_client = FailedLogins(limit, window_s)
        self.by_token = FailedLogins(limit, window_s)
        self.trusted_proxies = trusted_networks(node.config.api.trusted_proxies)

    def client(self, request: Request) -> str:
        """The address this request is counted and recorded under (``clients.py``)."""
        return client_address(request.client.host if request.client else None,
                              request.headers.getlist("x-forwarded-for"), self.trusted_proxies)

    def authenticate(self, request: Request, token: str | None) -> User:
        remote = self.client(request)
        if self.by_client.blocked(remote):
            raise Unauthorized("too many failed sign-ins from this address; wait and retry",
                               429, self.by_client.retry_after_s(remote))
        if not token:
            # Not a guess at a token, so not counted (a <video> without the session cookie
            # asks many times); still logged.
            log.info("request without a token from %s refused", remote)
            raise Unauthorized("a valid bearer token is required")
        user = self.node.users.authenticate(token)
        if user is not None:
            return user
        label = token_label(token)
        label_blocked = self.by_token.blocked(label)
        # Counted against the client even when the label is already blocked, so guesses that
        # share a label cannot go on unthrottled.
        from_client = self.by_client.failed(remote)
        with_token = self.by_token.failed(label)
        log.warning(_("sign-in failed from %s with token %s (not accepted; %d from this client, "
                      "%d with this token in the last %.0f s)"), remote, label, from_client,
                    with_token, self.by_client.window_s)
        if label_blocked:
            raise Unauthorized("too many failed sign-ins with this token; wait and retry",
                               429, self.by_token.retry_after_s(label))
        raise Unauthorized("token not accepted (unknown or revoked)")


def gate_of(request: Request) -> Gate:
    return cast(Gate, request.app.state.gate)


def api_node(request: Request) -> ApiNode:
    """The node this app serves (set by ``app.create_app``)."""
    return gate_of(request).node


def catalog_poller(request: Request) -> Poller:
    """The thread keeping the catalog current (its last error shows in ``/healthz``)."""
    return cast(Poller, request.app.state.poller)


def remote_address(request: Request) -> str:
    """The client's address as the audit chain records it (``remote``)."""
    return gate_of(request).client(request)


def current_user(request: Request, credentials: Credentials) -> User:
    return gate_of(request).authenticate(request, credentials.credentials if credentials else None)


def check(user: User, action: Action) -> User:
    """``user`` if the role matrix lets their role do ``action``; else 403."""
    if not allowed(user.role, action):
        raise AccessError(_("role {role} may not {value}").format(
            role=user.role, value=action.value))
    return user


@functools.cache
def require(action: Action) -> Callable[[User], User]:
    """The dependency for a route that does ``action``: the signed-in user, if allowed."""
    def allowed_user(user: Annotated[User, Depends(current_user)]) -> User:
        return check(user, action)
    allowed_user.__name__ = f"require_{action.value}"
    return allowed_user


Node = Annotated[ApiNode, Depends(api_node)]
CatalogPoller = Annotated[Poller, Depends(catalog_poller)]
Remote = Annotated[str, Depends(remote_address)]
CurrentUser = Annotated[User, Depends(current_user)]
