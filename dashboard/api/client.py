"""A small client of the read API, for the dashboard and the CLI reports.

Both read only through the API: in embedded mode the worker owns the store, and in production
the API is where team scoping is enforced.
"""

from __future__ import annotations

from typing import Any

import httpx

from costline.schemas.errors import CostlineError
from costline.schemas.settings import Settings


class ApiError(CostlineError):
    """The API answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"read API error {status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail


class ApiClient:
    """GET/POST JSON (or bytes) against `base_url` with a bearer token."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    @classmethod
    def from_settings(cls, settings: Settings, token: str | None = None) -> ApiClient:
        """A client of `COSTLINE_API_URL` with `token`, else `COSTLINE_API_TOKEN`."""
        if token is None and settings.api_token is not None:
            token = settings.api_token.get_secret_value()
        return cls(settings.resolved_api_url(), token)

    def get(self, path: str, **params: Any) -> Any:
        """GET `/api/v1{path}` and decode JSON; `None` parameters are left out, lists repeat."""
        return self._send("GET", path, params=params).json()

    def get_bytes(self, path: str, **params: Any) -> bytes:
        """GET a file (CSV, Parquet)."""
        return self._send("GET", path, params=params).content

    def post(self, path: str, json: Any = None, content: bytes | None = None, **params: Any) -> Any:
        """POST JSON or raw bytes, decode the JSON answer."""
        response = self._send("POST", path, params=params, json=json, content=content)
        return response.json() if response.content else None

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, params: dict[str, Any], **kwargs: Any) -> httpx.Response:
        query = {key: value for key, value in params.items() if value is not None}
        try:
            response = self._http.request(method, f"/api/v1{path}", params=query, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach the read API at {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise ApiError(response.status_code, _detail(response))
        return response


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else str(detail)[:500]
