"""API answers become typed exceptions."""

from __future__ import annotations

import pytest
from kubetune.kube import errors


@pytest.mark.parametrize(
    ("status", "reason", "cls"),
    [
        (404, "NotFound", errors.NotFound),
        (409, "AlreadyExists", errors.AlreadyExists),
        (409, "Conflict", errors.Conflict),
        (403, "Forbidden", errors.Forbidden),
        (401, "Unauthorized", errors.Unauthorized),
        (422, "Invalid", errors.Invalid),
        (410, "Expired", errors.Gone),
        (429, "TooManyRequests", errors.ServerError),
        (503, "ServiceUnavailable", errors.ServerError),
        (400, "BadRequest", errors.BadRequest),
        (418, "Teapot", errors.ApiError),
    ],
)
def test_status_objects(status: int, reason: str, cls: type[errors.ApiError]) -> None:
    err = errors.from_response(status, {"kind": "Status", "reason": reason, "message": "m"}, "GET", "/api/v1/x")
    assert type(err) is cls
    assert (err.status, err.reason, err.message) == (status, reason, "m")
    assert str(err) == f"GET /api/v1/x: {status} {reason}: m"


def test_non_json_bodies() -> None:
    err = errors.from_response(502, "<html>bad gateway</html>")
    assert isinstance(err, errors.ServerError) and err.reason == "ServerError" and "bad gateway" in err.message
    assert errors.from_response(500, None).message == ""
