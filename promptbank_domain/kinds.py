"""The names of the prompt kinds. How each kind works (shapes, codec, training) lives with its mechanics; this
is only the vocabulary every layer shares, and the value stored in a version's row and a prompt's bytes."""

from __future__ import annotations

from enum import StrEnum


class PromptKind(StrEnum):
    """What a prompt is: "input" = (n, H) vectors before the text's embeddings (prompt tuning); "deep" = (n, width)
    keys and values for every self-attention layer (prefix tuning)."""

    INPUT = "input"
    DEEP = "deep"


INPUT, DEEP = PromptKind.INPUT.value, PromptKind.DEEP.value  # plain strings: they print as themselves
PROMPT_KINDS: tuple[str, ...] = tuple(k.value for k in PromptKind)
