"""Routes declared once: the same definitions register the handlers, validate the requests
and produce the OpenAPI 3 document, so the document cannot drift from what is enforced."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    handler: Handler
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    # Optional request headers the endpoint reads: name → their OpenAPI schema.
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)


class ApiSpec:
    """A table of endpoints; ``route`` is the decorator that fills it."""

    def __init__(self, title: str, version: str) -> None:
        self.title = title
        self.version = version
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        summary: str,
        *,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        responses: dict[int, type[BaseModel] | None] | None = None,
        headers: dict[str, dict[str, Any]] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare an endpoint; ``responses`` maps status codes to their body models,
        ``headers`` the optional request headers it reads to their schemas."""

        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method, path, summary, handler, body, query, responses or {}, headers or {}
                )
            )
            return handler

        return register

    def routes(self) -> list[web.RouteDef]:
        return [web.route(e.method, e.path, e.handler) for e in self.endpoints]

    def openapi(self, error_model: type[BaseModel], prefix: str) -> dict[str, Any]:
        """The OpenAPI 3.1 document for every declared endpoint."""
        schemas: dict[str, Any] = {}

        def ref(model: type[BaseModel], mode: JsonSchemaMode = "validation") -> dict[str, str]:
            # A response is described as it is written (serialization aliases, e.g. "from").
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
            return {"$ref": f"#/components/schemas/{model.__name__}"}

        paths: dict[str, Any] = {}
        for endpoint in self.endpoints:
            operation: dict[str, Any] = {"summary": endpoint.summary, "security": [{"bearer": []}]}
            parameters = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                }
                for name in re.findall(r"{(\w+)}", endpoint.path)
            ]
            if endpoint.query is not None:
                for name, prop in endpoint.query.model_json_schema()["properties"].items():
                    required = name in endpoint.query.model_json_schema().get("required", [])
                    parameters.append(
                        {"name": name, "in": "query", "required": required, "schema": prop}
                    )
            parameters += [
                {"name": name, "in": "header", "required": False, "schema": schema}
                for name, schema in endpoint.headers.items()
            ]
            if parameters:
                operation["parameters"] = parameters
            if endpoint.body is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": ref(endpoint.body)}},
                }
            responses: dict[str, Any] = {}
            # Every request may meet the token check, the caller's rate limit and a database
            # that is away (app.py).
            always = {401: error_model, 429: error_model, 503: error_model}
            for status, model in {**endpoint.responses, **always}.items():
                response: dict[str, Any] = {"description": _STATUS_TEXT.get(status, "")}
                if model is not None:
                    response["content"] = {
                        "application/json": {"schema": ref(model, "serialization")}
                    }
                if status in (429, 503):
                    response["headers"] = {"Retry-After": _RETRY_AFTER}
                responses[str(status)] = response
            # Bad path and query parameters are refused like bad bodies (bot/api/routes.py).
            if endpoint.body is not None or parameters:
                responses.setdefault(
                    "422",
                    {
                        "description": _STATUS_TEXT[422],
                        "content": {
                            "application/json": {"schema": ref(error_model, "serialization")}
                        },
                    },
                )
            operation["responses"] = responses
            paths.setdefault(prefix + endpoint.path, {})[endpoint.method.lower()] = operation
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
        }


_RETRY_AFTER = {
    "description": "Seconds to wait before the next request",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    400: "Bad request",
    401: "Missing or wrong token",
    403: "This caller may not do this",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    422: "Invalid payload or parameter",
    429: "Too many requests",
    503: "The database is unavailable; nothing was changed",
}
