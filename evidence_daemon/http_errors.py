"""What went wrong with an HTTP request, said shortly for a human (S3 archive, TSA).

urllib3 wraps the one useful fact (connection refused, timed out) in several layers of
exceptions; every adapter that talks HTTP through it describes failures the same way.
"""

from __future__ import annotations

import urllib3


def describe(exc: BaseException) -> str:
    """A short reason: "cannot connect (Connection refused)", "timed out", or the error."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return f"cannot connect ({str(exc).rpartition(': ')[2]})"
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(exc, urllib3.exceptions.ProtocolError) and len(exc.args) > 1:
        return f"connection broken ({exc.args[1]})"
    return str(exc) or type(exc).__name__
