"""The promptbank services the coordinator serves: over gRPC, and over REST from their google.api.http
annotations. Light to import (descriptors only): scripts/gen_openapi.py reads them without loading the server."""

from __future__ import annotations

from promptbank_api.v1 import auth_pb2, catalog_pb2, inference_pb2, jobs_pb2, live_pb2

API = (
    catalog_pb2.DESCRIPTOR.services_by_name["PromptCatalog"],
    jobs_pb2.DESCRIPTOR.services_by_name["TrainJobs"],
    inference_pb2.DESCRIPTOR.services_by_name["Inference"],
    live_pb2.DESCRIPTOR.services_by_name["LiveEvaluation"],
    auth_pb2.DESCRIPTOR.services_by_name["Tokens"],
)
SERVICES = tuple(service.full_name for service in API)
