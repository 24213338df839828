"""The server's prompt kinds as the CLI describes them offline: the SDK does not load `promptbank_kinds`
(torch), yet `promptbank train --help` states each kind's defaults and `--kind` lists the kinds. So the SDK
keeps a copy of the plain descriptions each kind module registers (`promptbank_domain.kinds.KindInfo`), in the
registry's order; tests/test_kinds.py fails when the copy and the server's kinds differ, and a process that
loads both refuses a differing description at import.
"""

from __future__ import annotations

from promptbank_domain import kinds

KINDS = (
    kinds.KindInfo("input", "PROMPT_KIND_INPUT"),
    kinds.KindInfo("deep", "PROMPT_KIND_DEEP", {"learning_rate": 5e-4, "epochs": 5, "prefix_projection": 512},
                   projects=True),
)
PREFERRED = "deep"  # the kind a train job that names none gets, where the backbone carries it


def describe() -> None:
    """Describe the server's kinds to the domain's registry (a no-op where they are described already)."""
    for info in KINDS:
        kinds.describe(info)
    kinds.prefer(PREFERRED)
