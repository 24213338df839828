"""Whether a generation fits its backbone's context, decided before the first token: a request that would run
out of positions half-way is refused with the numbers, never cut short or failed mid-stream."""

from __future__ import annotations

from promptbank_api.errors import InvalidArgument
from workers.backbone import CAUSAL_LM, FrozenBackbone
from workers.soft_prompt import RowPrompt, prompt_length, tokenize


def text_ids(bb: FrozenBackbone, prompt: RowPrompt, text: str, max_new_tokens: int) -> list[int]:
    """`text`'s token ids, after checking that prompt + text (+ the new tokens, on a causal LM, where they share
    the context) fit the backbone's positions."""
    room = bb.max_positions
    ids = tokenize(bb, [text], room + 1)[0]  # one more than fits: a longer text shows, rather than being cut
    p, t = prompt_length(prompt), len(ids)
    new = max_new_tokens if bb.architecture == CAUSAL_LM else 0
    if p + t + new > room:
        parts = f"prompt ({p}) + text ({t})" + (f" + max_new_tokens ({new})" if new else "")
        fix = (f"ask for at most {room - p - t} new tokens, or send a shorter text" if new and p + t < room
               else "send a shorter text")
        raise InvalidArgument(f"{parts} = {p + t + new} positions, but backbone {bb.info.model!r} has {room}; {fix}")
    return ids
