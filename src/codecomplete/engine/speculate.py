"""Prompt-lookup drafts for speculative decoding (torch-free).

Code completions repeat their context: a call written like the one three lines up, a name from
the signature, the rest of a line that appeared before. A lone sequence's decode step is bound by
reading the weights once per token, and a batch's step on a small model mostly by per-op
overhead, so checking a few guessed tokens per row in one forward costs a fraction of decoding
them one at a time. The guess is the n-gram lookup llama.cpp ("lookup") and vLLM ("ngram") use:
find the most recent earlier place where the sequence's last n tokens (n from `max_n` down to
`min_n`) occurred in its prompt or output, and propose the tokens that followed.

The engine (core.py) feeds each row's next token and draft in one forward, then samples position
j of every row before position j + 1, exactly as plain steps would (same penalties, bias, stop
and length checks, the same random stream, one token at a time), and keeps each row's tokens up
to the first one that differs from its draft. So what a request gets does not depend on the
draft: for sampled rows the check is exact (the logits of one-token steps, to the bit), for
greedy rows it may be the multi-token kernels', whose last bits can differ from a one-token
step's (as a batched step's can from a lone one's).
"""

from __future__ import annotations

from array import array

_WIDTH = array("i").itemsize


class PromptLookup:
    """The tokens a sequence has fed the model so far (prompt, then output), searchable for
    earlier occurrences of its last n tokens."""

    def __init__(self, tokens: list[int], max_n: int = 4, min_n: int = 2):
        if not 1 <= min_n <= max_n:
            raise ValueError("need 1 <= min_n <= max_n")
        self.max_n, self.min_n = max_n, min_n
        self._data = bytearray(array("i", tokens).tobytes())
        self.length = len(tokens)
        self.budget: int | None = None  # draft length now (adapts to how drafts fare: record())

    def extend(self, tokens: list[int]) -> None:
        self._data += array("i", tokens).tobytes()
        self.length += len(tokens)

    def record(self, proposed: int, accepted: int, k: int) -> None:
        """How the last draft fared: a draft rejected outright halves the next one's length, one
        taken whole doubles it (up to k). A rejected draft costs its forward's extra rows."""
        budget = self.budget or k
        if accepted == 0:
            self.budget = max(1, budget // 2)
        elif accepted == proposed:
            self.budget = min(k, budget * 2)

    def propose(self, k: int) -> list[int]:
        """Up to k tokens (fewer while drafts keep failing: record()) that followed the most
        recent earlier occurrence of the longest tail (max_n .. min_n tokens) found; [] when
        none occurs."""
        k = min(k, self.budget or k)
        if k < 1:
            return []
        data, w, length = self._data, _WIDTH, self.length
        for n in range(min(self.max_n, length - 1), self.min_n - 1, -1):
            needle = bytes(data[(length - n) * w :])
            end = (length - 1) * w  # an occurrence inside this ends before the last token: one follows it
            while True:
                at = data.rfind(needle, 0, end)
                if at < 0:
                    break
                if at % w == 0:  # token-aligned (a match can straddle two tokens' bytes)
                    start = at // w + n
                    return array("i", data[start * w : min(start + k, length) * w]).tolist()
                end = at + len(needle) - 1
        return []
