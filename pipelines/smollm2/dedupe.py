"""Which residual rows of a set of token sequences are distinct, for SAE training.

In a causal model a row depends only on the tokens up to it, so every sequence that starts with the same
system prompt (or the same question) has bit-for-bit the same residuals there: hundreds of copies would
dominate the SAE's data. A trie over token prefixes keeps the first occurrence of each prefix. Row 0 (the
BOS / first <|im_start|>, with a norm about 150x the median) is always dropped.
"""

from __future__ import annotations


def distinct_rows(sequences: list[list[int]]) -> list[list[int]]:
    """For each sequence, the indices of its rows to keep."""
    trie: dict[tuple[int, int], int] = {}
    keep = []
    for seq in sequences:
        node, rows = -1, []
        for t, tok in enumerate(seq):
            key = (node, tok)
            child = trie.get(key)
            if child is None:
                child = len(trie)
                trie[key] = child
                if t > 0:
                    rows.append(t)
            node = child
        keep.append(rows)
    return keep
