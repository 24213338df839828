"""HTTP routes from the protos' `google.api.http` annotations (AIP-127), read from the descriptors at start-up.

One `Route` per binding (a rule and its additional_bindings): the HTTP method, the path template compiled to a
regular expression, the request fields its variables fill, and which part of the request the body holds. No
route is written by hand: an RPC without an annotation has no REST face.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import Descriptor, MethodDescriptor, ServiceDescriptor

VERBS = ("get", "put", "post", "delete", "patch")
SEGMENT = r"[^/:]+"  # one path segment; ':' starts a custom verb (`:cancel`), never part of a name
_VARIABLE = re.compile(r"\{([A-Za-z_][\w.]*)(?:=([^}]*))?\}")


class NoRoute(Exception):
    """No route has this path (404), or none has it with this HTTP method (405: `allowed` names the others)."""

    def __init__(self, message: str, allowed: tuple[str, ...] = ()):
        super().__init__(message)
        self.allowed = allowed


@dataclass(frozen=True)
class Route:
    """One HTTP binding of one RPC."""

    http_method: str  # "GET", "POST", ...
    template: str  # "/v1/{name=jobs/*}:cancel"
    pattern: re.Pattern[str]
    variables: tuple[str, ...]  # request field paths the template's variables fill, in group order
    body: str  # "" (no body: the other fields come from the query), "*" (the whole request), or one field
    rpc: str  # the gRPC method path, "/promptbank.v1.TrainJobs/CancelTrainJob"
    input: Descriptor
    output: Descriptor
    client_streaming: bool
    server_streaming: bool

    def match(self, path: str) -> dict[str, str] | None:
        """The variables' values (percent-decoded) when `path` (still percent-encoded) fits the template."""
        m = self.pattern.fullmatch(path)
        return None if m is None else {f: unquote(v) for f, v in zip(self.variables, m.groups(), strict=True)}


def _segments(text: str) -> str:
    """A path template's segments as a regular expression: `*` one segment, `**` any number."""
    parts = []
    for seg in text.split("/"):
        parts.append(SEGMENT if seg == "*" else "[^:]+" if seg == "**" else re.escape(seg))
    return "/".join(parts)


def compile_template(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """`/v1/{name=prompts/*/versions/*}:export` -> a pattern with one group per variable, and their fields."""
    if not template.startswith("/"):
        raise ValueError(f"path template {template!r} must start with '/'")
    verb = ""
    tail = template.rsplit("/", 1)[-1]
    if ":" in tail.rsplit("}", 1)[-1]:  # a custom verb after the last segment, outside any variable
        template, verb = template.rsplit(":", 1)
    fields: list[str] = []
    out, pos = [], 0
    for m in _VARIABLE.finditer(template):
        out.append(_segments(template[pos:m.start()]))
        fields.append(m.group(1))
        out.append(f"({_segments(m.group(2) or '*')})")
        pos = m.end()
    out.append(_segments(template[pos:]))
    regex = "".join(out) + (re.escape(":" + verb) if verb else "")
    return re.compile(regex), tuple(fields)


def _bindings(rule: http_pb2.HttpRule) -> Iterator[tuple[str, str, str]]:
    kind = rule.WhichOneof("pattern")
    if kind in VERBS:
        yield kind.upper(), getattr(rule, kind), rule.body
    elif kind == "custom":
        yield rule.custom.kind.upper(), rule.custom.path, rule.body
    for extra in rule.additional_bindings:
        yield from _bindings(extra)


def rule_of(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    options = method.GetOptions()
    return options.Extensions[annotations_pb2.http] if options.HasExtension(annotations_pb2.http) else None


def routes_of(services: Iterable[ServiceDescriptor]) -> list[Route]:
    """Every binding of every annotated RPC of `services`."""
    routes = []
    for service in services:
        for method in service.methods:
            rule = rule_of(method)
            if rule is None:
                continue
            for http_method, template, body in _bindings(rule):
                pattern, variables = compile_template(template)
                routes.append(Route(http_method, template, pattern, variables, body,
                                    f"/{service.full_name}/{method.name}", method.input_type, method.output_type,
                                    method.client_streaming, method.server_streaming))
    return routes


class Router:
    """Finds the route of a request; templates with more literal text win over looser ones."""

    def __init__(self, routes: Iterable[Route]):
        self.routes = sorted(routes, key=lambda r: -len(_VARIABLE.sub("", r.template)))

    def find(self, http_method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = []
        for route in self.routes:
            values = route.match(path)
            if values is None:
                continue
            if route.http_method == http_method:
                return route, values
            allowed.append(route.http_method)
        if allowed:
            raise NoRoute(f"{http_method} is not allowed on {path}; use {', '.join(sorted(set(allowed)))}",
                          tuple(sorted(set(allowed))))
        raise NoRoute(f"no route for {path}; see /openapi.json")
