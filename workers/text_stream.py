"""A generation's text as it streams: decoded pieces that concatenate to the output, cut before a stop string.

The text is decoded from all tokens so far (no whitespace clean-up, so a later token never rewrites what was
shown) and shown up to what is certain: not a trailing incomplete character (a byte-level tokenizer's
U+FFFD until the rest of its bytes arrive), and not a tail that could still grow into a stop string (shown
later if it does not). When a stop string appears, the output ends just before it.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

INCOMPLETE = "\ufffd"


class TextStream:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: tuple[str, ...] = ()):
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.shown = ""  # what the pieces so far concatenate to
        self.stopped = False

    def _decode(self) -> str:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        assert isinstance(text, str)  # one sequence of ids decodes to one string
        return text

    def _held(self, text: str) -> int:
        """Characters at the end of `text` that may begin a stop string."""
        held = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), held, -1):
                if text.endswith(s[:n]):
                    held = n
                    break
        return held

    def _emit(self, upto: str) -> str:
        """The piece that extends `shown` to `upto` (nothing when `upto` is not beyond it)."""
        if len(upto) <= len(self.shown) or not upto.startswith(self.shown):
            return ""
        piece, self.shown = upto[len(self.shown):], upto
        return piece

    def push(self, token: int) -> str:
        """Add a generated token; returns the new piece of text (maybe empty). Sets `stopped` when a stop string
        appeared: the output then ends before it and nothing more is added."""
        self.ids.append(token)
        text = self._decode()
        if self.stop:
            hits = [i for i in (text.find(s, max(0, len(self.shown) - len(s) + 1)) for s in self.stop) if i >= 0]
            if hits:
                self.stopped = True
                return self._emit(text[: min(hits)])
        cut = len(text)
        while cut and text[cut - 1] == INCOMPLETE:
            cut -= 1
        cut -= self._held(text[:cut])
        return self._emit(text[:cut])

    def flush(self) -> str:
        """At the end (length, eos): what was held back."""
        return "" if self.stopped else self._emit(self._decode())
