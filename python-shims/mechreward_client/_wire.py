"""Conversion between Python arrays and the wire messages of mechreward.v1.

Activations travel as raw little-endian row-major bytes in the dtype they already have: float32, float16 or
bfloat16. A bfloat16 torch tensor is reinterpreted as int16 to reach its bytes, never widened to float32.
torch is not imported here: tensors are recognised by duck typing so the client works without it.

The fast path (``prepare_batch`` + ``encode_score_request``) writes the serialized ScoreRequest itself: a
contiguous little-endian CPU array is joined into the message bytes straight from its memory (one copy), or
copied once into a shared-memory segment (``copy_into``; a CUDA tensor goes device-to-host straight into the
segment). ``build_score_request`` (protobuf objects) stays for callers that want a message; the test suite
checks that both produce the same bytes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._generated import reward_pb2
from ._types import CanaryFlag, PackInfo, RunBaseline, RunSummary, ScoredSequence, ServerInfo, ValidationSummary

_NUMPY_WIRE_DTYPE = {
    "float32": reward_pb2.DTYPE_F32,
    "float16": reward_pb2.DTYPE_F16,
    "bfloat16": reward_pb2.DTYPE_BF16,  # ml_dtypes.bfloat16
}
_TORCH_WIRE_DTYPE = {
    "torch.float32": reward_pb2.DTYPE_F32,
    "torch.float16": reward_pb2.DTYPE_F16,
    "torch.bfloat16": reward_pb2.DTYPE_BF16,
}


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach") and hasattr(value, "dtype")


def _torch_bytes(tensor: Any, where: str) -> tuple[bytes, int, tuple[int, ...]]:
    dtype_name = str(tensor.dtype)
    if dtype_name not in _TORCH_WIRE_DTYPE:
        raise TypeError(f"{where}: dtype {dtype_name} is not sent; use float32, float16 or bfloat16")
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    if dtype_name == "torch.bfloat16":
        import torch  # only reached with a torch tensor in hand

        # Same 16 bits, viewed as an integer type numpy understands: no float32 round trip.
        array = t.view(torch.int16).numpy()
    else:
        array = t.numpy()
    return _little_endian_bytes(array), _TORCH_WIRE_DTYPE[dtype_name], tuple(t.shape)


def _little_endian_bytes(array: np.ndarray) -> bytes:
    big_endian = array.dtype.byteorder == ">" or (array.dtype.byteorder in "=|" and sys.byteorder == "big")
    if big_endian and array.dtype.itemsize > 1:
        array = array.byteswap()
    return np.ascontiguousarray(array).tobytes()


def _numpy_bytes(array: np.ndarray, where: str) -> tuple[bytes, int, tuple[int, ...]]:
    name = array.dtype.name
    if name not in _NUMPY_WIRE_DTYPE:
        raise TypeError(f"{where}: dtype {name} is not sent; use float32, float16 or bfloat16 (ml_dtypes)")
    return _little_endian_bytes(array), _NUMPY_WIRE_DTYPE[name], tuple(array.shape)


def encode_sequence(activations: Any, score_from: int, index: int) -> reward_pb2.Sequence:
    """One [num_tokens, d_model] array or tensor -> a wire Sequence."""
    where = f"sequences[{index}]"
    if _is_torch_tensor(activations):
        data, dtype, shape = _torch_bytes(activations, where)
    elif isinstance(activations, np.ndarray):
        data, dtype, shape = _numpy_bytes(activations, where)
    else:
        raise TypeError(f"{where}: expected a numpy array or torch tensor, got {type(activations).__name__}")
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{where}: expected shape [num_tokens, d_model] with both > 0, got {list(shape)}")
    if not isinstance(score_from, (int, np.integer)) or isinstance(score_from, bool) or score_from < 0:
        raise ValueError(f"{where}.score_from: expected an integer >= 0, got {score_from!r}")
    return reward_pb2.Sequence(activations=data, dtype=dtype, num_tokens=shape[0], score_from=int(score_from))


def score_froms(score_from: int | SequenceABC[int] | None, count: int) -> list[int]:
    """Expand the score_from argument (None, one int for all, or one per sequence)."""
    if score_from is None:
        return [0] * count
    if isinstance(score_from, (int, np.integer)) and not isinstance(score_from, bool):
        return [int(score_from)] * count
    values = list(score_from)
    if len(values) != count:
        raise ValueError(f"score_from: expected {count} values (one per sequence), got {len(values)}")
    return values


def per_sequence(name: str, values: SequenceABC[Any] | None, count: int) -> list[Any]:
    """An optional per-sequence argument: None (nothing for any sequence) or exactly one entry per sequence."""
    if values is None:
        return [None] * count
    if isinstance(values, (str, bytes)):
        # A lone string would otherwise be read as one value per character.
        raise TypeError(f"{name}: expected a list with one entry per sequence, got a single {type(values).__name__}")
    items = list(values)
    if len(items) != count:
        raise ValueError(f"{name}: expected {count} values (one per sequence), got {len(items)}")
    return items


def _optional_str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{where}: expected a string or None, got {type(value).__name__}")
    return value


def add_text_fields(wire: reward_pb2.Sequence, text: Any, expected_answer: Any, tokens: Any, index: int) -> None:
    """The optional text fields the server's canary text rule and the monitor page read (proto fields 5-7)."""
    where = f"sequences[{index}]"
    wire.text = _optional_str(text, f"{where}.text")
    wire.expected_answer = _optional_str(expected_answer, f"{where}.expected_answer")
    if tokens is None:
        return
    if isinstance(tokens, str):
        raise TypeError(f"{where}.tokens: expected one string per token, got a single string")
    strings = list(tokens)
    if len(strings) != wire.num_tokens:
        raise ValueError(f"{where}.tokens: expected {wire.num_tokens} strings (one per token), got {len(strings)}")
    for t, token in enumerate(strings):
        if not isinstance(token, str):
            raise TypeError(f"{where}.tokens[{t}]: expected a string, got {type(token).__name__}")
    wire.tokens.extend(strings)


def _per_sequence_arguments(pack: Any, sequences: Any, score_from: Any, texts: Any, expected_answers: Any, tokens: Any) -> tuple[list[Any], list[int], list[Any], list[Any], list[Any]]:
    """The checks both request builders share: the pack name, the sequence list, and one entry per sequence of
    score_from, texts, expected_answers and tokens (their contents are checked by each builder)."""
    if not isinstance(pack, str) or not pack:
        raise ValueError(f"pack: expected a pack name, got {pack!r}")
    if _is_torch_tensor(sequences) or isinstance(sequences, np.ndarray):
        raise TypeError("sequences: expected a list of [num_tokens, d_model] arrays, got a single array")
    items = list(sequences)
    if not items:
        raise ValueError("sequences: expected at least one sequence")
    starts = score_froms(score_from, len(items))
    text_list = per_sequence("texts", texts, len(items))
    answer_list = per_sequence("expected_answers", expected_answers, len(items))
    token_list = per_sequence("tokens", tokens, len(items))
    return items, starts, text_list, answer_list, token_list


def build_score_request(
    pack: str,
    sequences: SequenceABC[Any],
    score_from: Any,
    run_id: str | None,
    texts: SequenceABC[str | None] | None = None,
    expected_answers: SequenceABC[str | None] | None = None,
    tokens: SequenceABC[SequenceABC[str] | None] | None = None,
    step: int | None = None,
) -> reward_pb2.ScoreRequest:
    items, starts, text_list, answer_list, token_list = _per_sequence_arguments(pack, sequences, score_from, texts, expected_answers, tokens)
    wire = []
    for i, (a, s) in enumerate(zip(items, starts)):
        seq = encode_sequence(a, s, i)
        add_text_fields(seq, text_list[i], answer_list[i], token_list[i], i)
        wire.append(seq)
    request = reward_pb2.ScoreRequest(pack=pack, sequences=wire, run_id=run_id or "")
    checked_step = _checked_step(step)
    if checked_step is not None:
        # ScoreRequest.step is optional: unset means "no step", so 0 stays a real first step.
        request.step = checked_step
    return request


# --- the fast path: prepared arrays and a hand-written ScoreRequest encoder ----------------------------------


@dataclass(frozen=True)
class WireArray:
    """One sequence's activations, checked and not yet copied.

    ``source`` is the caller's numpy array (any strides or byte order) or a detached torch tensor (bfloat16
    viewed as int16; CPU or CUDA), kept as it is until the one copy into the message or the segment.
    """

    source: Any
    dtype: int
    num_tokens: int
    d_model: int
    nbytes: int


@dataclass(frozen=True)
class PreparedBatch:
    pack: str
    arrays: tuple[WireArray, ...]
    score_from: tuple[int, ...]
    texts: tuple[str, ...]
    expected_answers: tuple[str, ...]
    tokens: tuple[tuple[str, ...] | None, ...]
    run_id: str
    # ScoreRequest.step (field 20, optional int64; the monitor page's x axis), None when unset.
    step: int | None = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)


def wire_array(activations: Any, score_from: int, index: int) -> WireArray:
    where = f"sequences[{index}]"
    if _is_torch_tensor(activations):
        dtype_name = str(activations.dtype)
        if dtype_name not in _TORCH_WIRE_DTYPE:
            raise TypeError(f"{where}: dtype {dtype_name} is not sent; use float32, float16 or bfloat16")
        source = activations.detach()
        if dtype_name == "torch.bfloat16":
            import torch  # only reached with a torch tensor in hand

            source = source.view(torch.int16)  # the same 16 bits; works on any device
        shape, dtype, itemsize = tuple(source.shape), _TORCH_WIRE_DTYPE[dtype_name], source.element_size()
    elif isinstance(activations, np.ndarray):
        name = activations.dtype.name
        if name not in _NUMPY_WIRE_DTYPE:
            raise TypeError(f"{where}: dtype {name} is not sent; use float32, float16 or bfloat16 (ml_dtypes)")
        source, shape, dtype, itemsize = activations, activations.shape, _NUMPY_WIRE_DTYPE[name], activations.dtype.itemsize
    else:
        raise TypeError(f"{where}: expected a numpy array or torch tensor, got {type(activations).__name__}")
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{where}: expected shape [num_tokens, d_model] with both > 0, got {list(shape)}")
    if not isinstance(score_from, (int, np.integer)) or isinstance(score_from, bool) or score_from < 0:
        raise ValueError(f"{where}.score_from: expected an integer >= 0, got {score_from!r}")
    return WireArray(source, dtype, int(shape[0]), int(shape[1]), int(shape[0]) * int(shape[1]) * itemsize)


def _checked_tokens(tokens: Any, num_tokens: int, where: str) -> tuple[str, ...] | None:
    if tokens is None:
        return None
    if isinstance(tokens, str):
        raise TypeError(f"{where}.tokens: expected one string per token, got a single string")
    strings = tuple(tokens)
    if len(strings) != num_tokens:
        raise ValueError(f"{where}.tokens: expected {num_tokens} strings (one per token), got {len(strings)}")
    for t, token in enumerate(strings):
        if not isinstance(token, str):
            raise TypeError(f"{where}.tokens[{t}]: expected a string, got {type(token).__name__}")
    return strings


def prepare_batch(
    pack: str,
    sequences: SequenceABC[Any],
    score_from: Any,
    run_id: str | None,
    texts: SequenceABC[str | None] | None = None,
    expected_answers: SequenceABC[str | None] | None = None,
    tokens: SequenceABC[SequenceABC[str] | None] | None = None,
    step: int | None = None,
) -> PreparedBatch:
    """Every argument checked (the same rules and messages as build_score_request), nothing copied yet."""
    items, starts, text_list, answer_list, token_list = _per_sequence_arguments(pack, sequences, score_from, texts, expected_answers, tokens)
    arrays = tuple(wire_array(a, s, i) for i, (a, s) in enumerate(zip(items, starts)))
    return PreparedBatch(
        pack=pack,
        arrays=arrays,
        score_from=tuple(int(s) for s in starts),
        texts=tuple(_optional_str(t, f"sequences[{i}].text") for i, t in enumerate(text_list)),
        expected_answers=tuple(_optional_str(t, f"sequences[{i}].expected_answer") for i, t in enumerate(answer_list)),
        tokens=tuple(_checked_tokens(t, a.num_tokens, f"sequences[{i}]") for i, (t, a) in enumerate(zip(token_list, arrays))),
        run_id=run_id or "",
        step=_checked_step(step),
    )


def _checked_step(step: Any) -> int | None:
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step: expected the trainer's global step, an int >= 0, got {step!r}")
    return int(step)


def host_bytes(array: WireArray) -> memoryview:
    """The array's little-endian bytes as a flat view, copying only when the source is not already host,
    C-contiguous and little-endian (a CUDA tensor: one device-to-host copy)."""
    source = array.source
    if _is_torch_tensor(source):
        if source.device.type != "cpu":
            source = source.cpu()
        source = source.contiguous().numpy()
    if source.dtype.byteorder == ">" or (source.dtype.byteorder in "=|" and sys.byteorder == "big"):
        source = source.byteswap()
    source = np.ascontiguousarray(source)
    return memoryview(source.view(np.uint8)).cast("B")


def copy_into(buffer: memoryview, offset: int, array: WireArray) -> None:
    """Copy the array's little-endian bytes into ``buffer`` at ``offset``: one pass, whatever its strides;
    a CUDA tensor is copied device-to-host straight into the buffer."""
    if sys.byteorder != "little":  # pragma: no cover - the client keeps big-endian hosts on the bytes path
        raise RuntimeError("shared memory needs a little-endian host")
    source = array.source
    if _is_torch_tensor(source) and source.device.type == "cpu":
        source = source.numpy()  # a view, strides kept: numpy's copy is a plain memcpy, torch's copy_ was ~25x slower here
    if _is_torch_tensor(source):
        import torch

        # CUDA: one device-to-host copy straight into the segment.
        target = torch.frombuffer(buffer, dtype=torch.uint8, count=array.nbytes, offset=offset)
        target.view(source.dtype).view(source.shape).copy_(source)
        del target
        return
    little = source.dtype.newbyteorder("<") if source.dtype.byteorder == ">" else source.dtype
    target = np.frombuffer(buffer, dtype=little, count=source.size, offset=offset).reshape(source.shape)
    np.copyto(target, source, casting="equiv")
    del target


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _string_field(field: int, value: str, parts: list, always: bool = False) -> int:
    """Append a length-delimited string field (proto3: omitted when empty unless repeated); return its size."""
    if not value and not always:
        return 0
    data = value.encode("utf-8")
    head = _key(field, 2) + _varint(len(data))
    parts.append(head)
    parts.append(data)
    return len(head) + len(data)


def _uint_field(field: int, value: int, parts: list) -> int:
    if not value:
        return 0
    data = _key(field, 0) + _varint(value)
    parts.append(data)
    return len(data)


@dataclass(frozen=True)
class ShmRef:
    region: str
    offset: int
    byte_size: int


def encode_score_request(batch: PreparedBatch, payloads: SequenceABC[Any]) -> bytes:
    """The serialized ScoreRequest, byte for byte what protobuf writes for the same message.

    ``payloads[i]`` is sequence i's activations as a bytes-like object (sent in field 1) or a ShmRef (sent
    as field 8, activations left empty). The only copy of the activations is the final join.
    """
    parts: list[Any] = []
    _string_field(1, batch.pack, parts)
    for i, (array, payload) in enumerate(zip(batch.arrays, payloads)):
        body: list[Any] = []
        size = 0
        if isinstance(payload, ShmRef):
            ref_parts: list[Any] = []
            ref_size = _string_field(1, payload.region, ref_parts)
            ref_size += _uint_field(2, payload.offset, ref_parts)
            ref_size += _uint_field(3, payload.byte_size, ref_parts)
        else:
            head = _key(1, 2) + _varint(array.nbytes)
            body += [head, payload]
            size += len(head) + array.nbytes
        size += _uint_field(2, array.dtype, body)
        size += _uint_field(3, array.num_tokens, body)
        size += _uint_field(4, batch.score_from[i], body)
        size += _string_field(5, batch.texts[i], body)
        size += _string_field(6, batch.expected_answers[i], body)
        for token in batch.tokens[i] or ():
            size += _string_field(7, token, body, always=True)
        if isinstance(payload, ShmRef):
            head = _key(8, 2) + _varint(ref_size)
            body.append(head)
            body += ref_parts
            size += len(head) + ref_size
        parts.append(_key(2, 2) + _varint(size))
        parts += body
    _string_field(3, batch.run_id, parts)
    if batch.step is not None:  # proto3 `optional`: written when set, 0 included
        parts.append(_key(20, 0) + _varint(batch.step))
    return b"".join(parts)


def decode_score_response(response: reward_pb2.ScoreResponse, expected: int) -> list[ScoredSequence]:
    if len(response.results) != expected:
        # The contract says one result per sequence; anything else is a server bug worth failing loudly on.
        raise RuntimeError(f"server returned {len(response.results)} results for {expected} sequences")
    return [
        ScoredSequence(
            reward=float(result.reward),
            token_rewards=np.asarray(result.token_rewards, dtype=np.float32),
            flags=tuple(CanaryFlag(name=f.name, reason=f.reason, value=float(f.value)) for f in result.flags),
            verifier_disagreement=float(result.verifier_disagreement) if result.has_verifier else None,
            verifier_factor=float(result.verifier_factor) if result.has_verifier else 1.0,
        )
        for result in response.results
    ]


def decode_pack_info(pack: reward_pb2.PackInfo) -> PackInfo:
    v = pack.validation
    return PackInfo(
        name=pack.name,
        model=pack.model,
        layer=pack.layer if pack.layer >= 0 else None,
        d_model=pack.d_model,
        d_sae=pack.d_sae,
        k=pack.k,
        architecture=pack.architecture,
        encode_mode=pack.encode_mode,
        feature_count=pack.feature_count,
        pooling=pack.pooling,
        canaries=tuple(pack.canaries),
        schema=pack.schema,
        sae_format=pack.sae_format,
        synthetic=pack.synthetic,
        description=pack.description,
        validation=ValidationSummary(v.present, v.verdict, v.spearman_rho, v.n, v.method),
        kind=pack.kind or "sae",
        verifier_mode=pack.verifier_mode,
    )


def decode_server_info(info: reward_pb2.GetInfoResponse) -> ServerInfo:
    return ServerInfo(
        version=info.version,
        onnxruntime_version=info.onnxruntime_version,
        max_message_bytes=info.max_message_bytes,
        max_tokens_per_request=info.max_tokens_per_request,
        max_inflight=info.max_inflight,
        max_batch_tokens=info.max_batch_tokens,
        workers=info.workers,
        intra_op_threads=info.intra_op_threads,
        packs=tuple(info.packs),
    )


def decode_run_summary(run: reward_pb2.RunSummary) -> RunSummary:
    b = run.baseline
    return RunSummary(
        run_id=run.run_id,
        pack=run.pack,
        sequences=int(run.sequences),
        flagged=int(run.flagged),
        flag_rate=float(run.flag_rate),
        ci=(float(run.ci.lo), float(run.ci.hi)),
        baseline=RunBaseline(float(b.rate), (float(b.ci.lo), float(b.ci.hi)), int(b.flagged), int(b.n)) if b.present else None,
        alarm=bool(run.alarm),
        flags_by_name={name: int(count) for name, count in sorted(run.flags_by_name.items())},
        first_seen_ms=int(run.first_seen_ms),
        last_seen_ms=int(run.last_seen_ms),
    )
