"""Token healing for prompts that end in the middle of a word (`    ret`, `import num`).

A byte-level BPE splits the prompt's last word where the cursor happens to be (`ret`), a split the
model rarely saw in training, where the whole word is one token (`return`). Healing removes the
prompt's trailing word-like tokens (the "tail", at most `max_chars` characters), feeds the rest,
and constrains the first generated token(s) to re-type the tail: a token must start with what is
left of the tail, or be the prompt's own next tail token (a tail of several tokens, such as
` r`+`an`, may be re-typed as the prompt split it). The re-typed tail is hidden from the client,
whose cursor is already after it.

Any other prefix of the tail is not offered: measured on the shipped model, allowing every prefix
let the model spell `" return"` as `" "`, `"r"`, `"e"`, ... (a split the byte-level pre-tokenizer
never makes), the very problem healing is for.

Pure Python (no torch): `VocabIndex` maps decoded token strings to ids for prefix lookups (built
once per model), `TokenHealer` picks a prompt's tail, `HealingState` is one sequence's progress
through it. The logits mask itself is applied in sampling.py.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

# A token worth healing: word characters and dots, at most one leading space (` num`, `ret`,
# `.jo`), at least one word character. Whitespace, newlines and operators end the tail: this
# project's tokenizer isolates newlines and indentation, so those are already natural splits.
_WORDLIKE = re.compile(r" ?[\w.]*\w[\w.]*")
_CONTEXT = 4  # tokens of left context when checking that the tail decodes as its pieces say
_MAX_CACHED = 4096


class VocabIndex:
    """The vocabulary's decoded strings, sorted, for "which tokens start with t" in O(log V + k).

    `pieces[i]` is token i's text as it decodes after other text, or None for tokens left out:
    special tokens and byte-level tokens that are not valid UTF-8 on their own (they decode to
    U+FFFD; we cannot say which characters they complete, so they never heal anything).
    """

    def __init__(self, pieces: Sequence[str | None]):
        self.pieces: list[str | None] = list(pieces)
        pairs = sorted((p, i) for i, p in enumerate(self.pieces) if p)
        self._texts = [p for p, _ in pairs]
        self._ids = [i for _, i in pairs]
        self._starting: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_tokenizer(cls, tokenizer, vocab_size: int | None = None) -> VocabIndex:
        """Decode every id after an anchor token ("a"), so a sentencepiece tokenizer's word-start
        marker shows as the space it is in context (decoded alone, "▁urn" loses it)."""
        n = len(tokenizer) if vocab_size is None else min(len(tokenizer), vocab_size)
        anchor = tokenizer("a", add_special_tokens=False)["input_ids"][-1:]
        kw = dict(skip_special_tokens=False, clean_up_tokenization_spaces=False)
        head = tokenizer.decode(anchor, **kw)
        texts = tokenizer.batch_decode([anchor + [i] for i in range(n)], **kw)
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        special |= {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special}
        pieces: list[str | None] = []
        for i, text in enumerate(texts):
            ok = i not in special and text.startswith(head) and len(text) > len(head)
            piece = text[len(head) :] if ok else None
            pieces.append(None if piece is None or "\ufffd" in piece else piece)
        return cls(pieces)

    def __len__(self) -> int:
        return len(self._texts)

    def piece(self, token_id: int) -> str | None:
        return self.pieces[token_id] if 0 <= token_id < len(self.pieces) else None

    def starting_with(self, text: str) -> list[int]:
        """Ids of the tokens whose text starts with `text` (`text` itself included)."""
        if not text:
            return list(self._ids)
        lo = bisect.bisect_left(self._texts, text)
        last = ord(text[-1])
        if last < 0x10FFFF:  # every string that starts with `text` sorts before this bound
            hi = bisect.bisect_left(self._texts, text[:-1] + chr(last + 1), lo)
        else:
            hi = lo
            while hi < len(self._texts) and self._texts[hi].startswith(text):
                hi += 1
        return self._ids[lo:hi]

    def starting_with_cached(self, text: str) -> tuple[int, ...]:
        """`starting_with` as a tuple, remembered (a tail is looked up once per sequence and step)."""
        hit = self._starting.get(text)
        if hit is None:
            if len(self._starting) >= _MAX_CACHED:
                self._starting.clear()
            hit = self._starting[text] = tuple(self.starting_with(text))
        return hit


@dataclass(frozen=True)
class HealedTail:
    """The tokens healing removed from the end of a prompt, and their text."""

    ids: tuple[int, ...]
    text: str


class HealingState:
    """One sequence's progress through a healed tail.

    `left`: what the next tokens must still type (the logits constraint; empty once done).
    `hide`: what the decoded output must still lose at its front (the text stripping; the
    detokenizer may hold text back, so it lags `left`).
    """

    def __init__(self, index: VocabIndex, tail: HealedTail):
        self.index = index
        self.tail = tail
        self.left = tail.text
        self.hide = tail.text
        self._next = 0  # the prompt's tail token that would come next on the prompt's own split
        self.hidden_tokens = 0  # generated tokens that lie wholly inside the tail

    @property
    def active(self) -> bool:
        return bool(self.left)

    def allowed(self) -> tuple[int, ...]:
        """Tokens that start with the rest of the tail, and the prompt's own next tail token when
        it is shorter than that rest. Never empty while active: the prompt's split is always there."""
        ids = self.index.starting_with_cached(self.left)
        if self._next < len(self.tail.ids) - 1:
            ids = (*ids, self.tail.ids[self._next])
        return ids

    def advance(self, token_id: int) -> int:
        """Account for a generated token; returns how many of its characters re-typed the tail."""
        if not self.left:
            return 0
        piece = self.index.piece(token_id) or ""
        if piece.startswith(self.left):
            covered, self.left = len(self.left), ""
        elif piece and self.left.startswith(piece):
            covered, self.left = len(piece), self.left[len(piece) :]
            self._next += 1
        else:  # cannot happen under the mask; stop constraining rather than loop
            covered, self.left = 0, ""
        if piece and covered == len(piece):
            self.hidden_tokens += 1
        return covered

    def visible(self, delta: str) -> str:
        """The part of a decoded delta the client sees (the re-typed tail removed)."""
        if not self.hide or not delta:
            return delta
        k = min(len(self.hide), len(delta))
        if delta[:k] != self.hide[:k]:
            # Decoding in context disagreed with the vocabulary index (a tokenizer whose decode is
            # not a concatenation of pieces): show the text rather than guess what to cut.
            self.hide = ""
            return delta
        self.hide = self.hide[k:]
        return delta[k:]


class TokenHealer:
    """Picks the tail of a tokenised prompt to heal. The vocabulary index is built on first use."""

    def __init__(self, tokenizer, vocab_size: int | None = None, max_chars: int = 8):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.max_chars = max_chars
        self._index: VocabIndex | None = None

    @property
    def index(self) -> VocabIndex:
        if self._index is None:
            self._index = VocabIndex.from_tokenizer(self.tokenizer, self.vocab_size)
        return self._index

    def heal(self, ids: list[int]) -> tuple[list[int], HealedTail | None]:
        """(the ids to feed, the tail removed). No healing: (ids, None)."""
        k, text = find_tail(ids, self.index, self.max_chars)
        if not k:
            return ids, None
        kept, removed = ids[:-k], ids[-k:]
        window = kept[-_CONTEXT:]
        kw = dict(skip_special_tokens=False, clean_up_tokenization_spaces=False)
        before = self.tokenizer.decode(window, **kw)
        if self.tokenizer.decode(window + removed, **kw) != before + text:
            return ids, None  # the pieces do not add up to the prompt's text here: leave it alone
        return kept, HealedTail(tuple(removed), text)


def find_tail(ids: Sequence[int], index: VocabIndex, max_chars: int) -> tuple[int, str]:
    """How many trailing tokens to heal, and their text.

    Walks back over word-like tokens while their text fits in `max_chars`, stopping after a token
    that starts a word (a leading space or dot). The first token is always kept, so the model has
    some context and the tail never includes the very start of a prompt.
    """
    tail, k = "", 0
    for token in reversed(ids[1:]):
        piece = index.piece(token)
        if piece is None or not _WORDLIKE.fullmatch(piece) or len(tail) + len(piece) > max_chars:
            break
        tail, k = piece + tail, k + 1
        if piece[0] in " .":
            break
    return k, tail
