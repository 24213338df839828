"""promptbank client side: the Python SDK (`Client`) and the `promptbank` CLI.

The SDK talks to the coordinator only over gRPC and imports only the generated stubs in `promptbank.v1`.
"""

from promptbank.client import Client, Prediction, RpcError

__all__ = ["Client", "Prediction", "RpcError"]
