"""promptbank client side: the Python SDK (`Client`) and the `promptbank` CLI.

The SDK talks to the coordinator only over gRPC and imports only the generated stubs in `promptbank.v1`.
A failed call raises a class from `promptbank.errors` (`NotFound`, ...), each a `grpc.RpcError` (`RpcError`).
"""

from promptbank.client import Client, Prediction, RpcError
from promptbank.errors import CallError
from promptbank.generation import Generation, GenerationResult
from promptbank.live_calls import OutcomeSummary

__all__ = ["CallError", "Client", "Generation", "GenerationResult", "OutcomeSummary", "Prediction", "RpcError"]
