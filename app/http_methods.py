"""Which methods each path answers: the `Allow` header of a 405, and HEAD answered as GET.

A FastAPI route answers one method and knows nothing of the other routes on its path, so a 405
listed the methods of whichever route matched the path first (`DELETE /v1/articles` answered
`Allow: POST`, though the path also answers GET), and HEAD, which FastAPI routes never list,
was a 405 on every GET route. Both are answered from one table of every route's path pattern
and methods, built from the app's routes on the first 405 or HEAD. Neither adds a step to
a request that matches its route: the table is read only on the way to a 405, or for a HEAD.
"""

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

# The methods of RFC 9110 and PATCH, in the order `Allow` lists them.
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")


class PathMethods:
    """Every route's path pattern with the methods it answers (GET routes answer HEAD too)."""

    def __init__(self, routes: Iterable[Any]) -> None:
        self._routes = []
        for route in routes:
            methods = set(getattr(route, "methods", None) or ())
            pattern = getattr(route, "path_regex", None)
            if methods and pattern is not None:
                if "GET" in methods:
                    methods.add("HEAD")
                self._routes.append((pattern, frozenset(methods)))

    def allowed(self, path: str) -> list[str]:
        """The methods `path` answers, in METHOD_ORDER."""
        methods: set[str] = set()
        for pattern, route_methods in self._routes:
            if pattern.match(path):
                methods |= route_methods
        return [method for method in METHOD_ORDER if method in methods]


def path_methods(app: FastAPI) -> PathMethods:
    """The app's table, built on first use (every route is added before the app serves)."""
    table: PathMethods | None = getattr(app.state, "path_methods", None)
    if table is None:
        table = app.state.path_methods = PathMethods(iter_route_contexts(app.router.routes))
    return table


def allow_header(scope: Scope) -> str:
    """`Allow` for a 405 on this request's path: every method of every route on the path."""
    return ", ".join(path_methods(scope["app"]).allowed(scope["path"]))


class HeadAsGet(BaseRoute):
    """Answers a HEAD on a path that answers GET as that GET: same status and headers
    (Content-Length and ETag included), and the server sends no body (uvicorn drops the body
    of every answer to a HEAD, as RFC 9110 9.3.2 asks).

    The last of the app's routes: every other route is tried first, so a GET never reaches it,
    and a HEAD reaches it only because no FastAPI route lists HEAD."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] == "http"
            and scope["method"] == "HEAD"
            and "GET" in path_methods(scope["app"]).allowed(scope["path"])
        ):
            return Match.FULL, {}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A copy: the server reads the method from its own scope to know that it must not send
        # the body.
        as_get = {**scope, "method": "GET"}
        try:
            await scope["router"](as_get, receive, send)
        finally:
            # The access log and the metrics label the request with the GET route's template.
            if "route" in as_get:
                scope["route"] = as_get["route"]

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)
