"""Token ids to the strings the monitor page shows: one per token, reading as the decoded text when joined.

``convert_ids_to_tokens`` gives raw vocabulary entries ("Ġ47", "▁is"), and decoding each id alone drops the
space SentencePiece attaches to a token at the start of a decode. So each token's string is what it adds to the
decoding of the few tokens before it: the same as decoding the whole prefix each time, without its quadratic
cost. Where a multi-byte character is split across tokens the decoding is not yet stable, and the token's own
decoding is used instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Tokens of left context per token. Decoders only change the first token of a decode or join neighbouring
# bytes; four tokens cover a UTF-8 character split across tokens.
CONTEXT_TOKENS = 4


def token_strings(tokenizer: Any, ids: Sequence[int], context: int = CONTEXT_TOKENS) -> list[str]:
    """One display string per id of ``ids`` (prompt and response alike, special tokens kept)."""
    ids = [int(i) for i in ids]
    windows: list[list[int]] = []
    for i in range(len(ids)):
        start = max(0, i - context)
        windows += [ids[start:i], ids[start : i + 1]]
    decoded = _decode_all(tokenizer, windows)
    out = [after[len(before):] if after.startswith(before) else None for before, after in zip(decoded[::2], decoded[1::2])]
    unstable = [i for i, s in enumerate(out) if s is None]
    for i, alone in zip(unstable, _decode_all(tokenizer, [ids[i : i + 1] for i in unstable])):
        out[i] = alone
    return out  # type: ignore[return-value]  # every None was replaced


def _decode_all(tokenizer: Any, windows: list[list[int]]) -> list[str]:
    if not windows:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # A fast tokenizer: one call into its Rust decoder for every window, and none of transformers' clean-up
        # of spaces before punctuation, so the strings join to the exact text.
        return list(backend.decode_batch(windows, skip_special_tokens=False))
    return [tokenizer.decode(w, skip_special_tokens=False, clean_up_tokenization_spaces=False) for w in windows]
