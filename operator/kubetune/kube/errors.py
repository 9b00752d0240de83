"""API errors as typed exceptions, so callers write ``except errors.AlreadyExists``.

The API server answers failures with a ``Status`` object (``code``, ``reason``, ``message``).
Create-or-adopt needs to tell ``AlreadyExists`` from an optimistic-concurrency ``Conflict``
(both are HTTP 409), and cleanups need ``NotFound``; this module maps each answer to a class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(RuntimeError):
    """The API server rejected a request.

    Attributes:
        status: the HTTP status code.
        reason: the ``Status.reason`` (e.g. ``AlreadyExists``, ``Forbidden``), or the HTTP reason.
        message: the ``Status.message``.
        method: the HTTP method of the request.
        path: the request path.
    """

    def __init__(self, status: int, reason: str, message: str, method: str = "", path: str = "") -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}".strip())
        self.status = status
        self.reason = reason
        self.message = message
        self.method = method
        self.path = path


class BadRequest(ApiError):  # noqa: N818
    """400: the object could not even be decoded (e.g. a malformed resource quantity)."""


class NotFound(ApiError):  # noqa: N818 - named after the Kubernetes reason
    """404: the object (or its namespace, or the resource type) does not exist."""


class AlreadyExists(ApiError):  # noqa: N818
    """409 AlreadyExists: an object with that name exists."""


class Conflict(ApiError):  # noqa: N818
    """409 Conflict: the object changed since it was read (resourceVersion mismatch)."""


class Forbidden(ApiError):  # noqa: N818
    """403: RBAC does not allow the request."""


class Unauthorized(ApiError):  # noqa: N818
    """401: the credentials were not accepted."""


class Invalid(ApiError):  # noqa: N818
    """422: the object failed validation (schema, CEL rules, immutable fields)."""


class Gone(ApiError):  # noqa: N818
    """410: a watch or list continuation is too old."""


class ServerError(ApiError):
    """5xx or 429: the server is overloaded or failing; retrying later may work."""


#: Answers that mean the request itself is wrong: sending it again cannot succeed.
REJECTED = (BadRequest, Invalid)


def from_response(status: int, body: Any, method: str = "", path: str = "") -> ApiError:
    """Build the exception of an error answer.

    Args:
        status: the HTTP status code.
        body: the decoded body: a ``Status`` object, other JSON, or text.
        method: the request method, for the message.
        path: the request path, for the message.

    Returns:
        The most specific :class:`ApiError` subclass.
    """
    reason, message = "", ""
    if isinstance(body, Mapping):
        reason = str(body.get("reason") or "")
        message = str(body.get("message") or "")
    elif body:
        message = str(body)[:1000]
    cls: type[ApiError]
    if status == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
    else:
        cls = {400: BadRequest, 404: NotFound, 403: Forbidden, 401: Unauthorized, 422: Invalid, 410: Gone}.get(
            status, ApiError
        )
        if status == 429 or status >= 500:
            cls = ServerError
    return cls(status, reason or cls.__name__, message, method, path)
