"""The coordinator's REST/JSON face and web console: HTTP routes derived from the protos' `google.api.http`
annotations, answered by the same servicers through the same interceptor chain as gRPC (coordinator/server.py
wires it); nothing here is known to the services."""
