"""Two prompts may hold the very same tensor under different tasks (an import, a copy): rows of both in one
request must each be scored under their own task, never the other's (rows are keyed by prompt and task)."""

from __future__ import annotations

from promptbank import Client
from tests.test_server import DATA, train


def test_one_tensor_under_two_tasks_in_one_request_keeps_each_task(client: Client) -> None:
    done = train(client, "rowkey-a", labels=["negative", "positive"])
    exported = client.export_version(done.result_version)
    copy = client.import_version("rowkey-b", "tiny-enc", exported.adapter_config, exported.adapter_model,
                                 labels=["positive", "negative"])  # the same labels, in the other order
    assert copy.sha256 == client.get_version(done.result_version).sha256  # the very same bytes
    texts = [t for t, _ in DATA[:6]]
    mixed = client.classify([(p, t) for t in texts for p in ("rowkey-a", "rowkey-b")])
    for i, t in enumerate(texts):
        a, b = mixed[2 * i], mixed[2 * i + 1]
        alone_b = client.classify([("rowkey-b", t)])[0]
        assert b.label == alone_b.label and abs(b.scores[b.label] - alone_b.scores[b.label]) < 1e-5, (t, a, b)
        assert a.scores["positive"] == b.scores["positive"] or abs(a.scores["positive"] - b.scores["positive"]) < 1e-5
    flips = [a.label == b.label for a, b in zip(mixed[::2], mixed[1::2], strict=True)]
    assert all(flips), flips  # the same tensor and label texts: the same label, whatever the order
