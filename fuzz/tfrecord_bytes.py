"""Reference-format TFRecord bytes without TensorFlow: a tf.train.SequenceExample encoder (protobuf wire
format, only the fields the engine reads) and the TFRecord framing. For fuzz seeds and tests that must
not import TensorFlow; test_reliability checks the output against TensorFlow's own parser."""
from __future__ import annotations

import struct
from typing import Iterable, Sequence


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 values are sent as 10-byte two's complement, as protobuf does
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _map_entry(key: str, value: bytes) -> bytes:
    return _len_field(1, _len_field(1, key.encode()) + _len_field(2, value))


def bytes_feature(values: Iterable[bytes]) -> bytes:
    return _len_field(1, b"".join(_len_field(1, v) for v in values))


def int64_feature(values: Iterable[int]) -> bytes:
    return _len_field(3, _len_field(1, b"".join(_varint(v) for v in values)))


def float_feature(values: Iterable[float]) -> bytes:
    return _len_field(2, _len_field(1, b"".join(struct.pack("<f", v) for v in values)))


def sequence_example(frames: Sequence[bytes], labels: Sequence[int] = (), fps: float | None = None) -> bytes:
    """context {'clip/label/index': int64 labels, 'video/fps': fps}, feature_lists {'image/encoded': one
    JPEG per step}."""
    context = _map_entry("clip/label/index", int64_feature(labels))
    if fps is not None:
        context += _map_entry("video/fps", float_feature([fps]))
    steps = b"".join(_len_field(1, bytes_feature([f])) for f in frames)
    feature_lists = _map_entry("image/encoded", steps)
    return _len_field(1, context) + _len_field(2, feature_lists)


def tfrecord(payloads: Iterable[bytes], masked_crc) -> bytes:
    """TFRecord framing: length, masked CRC-32C of the length, payload, masked CRC-32C of the payload.
    masked_crc: cvrl_fast._C.tfrecord_masked_crc (tested against TensorFlow's reader)."""
    out = bytearray()
    for p in payloads:
        length = struct.pack("<Q", len(p))
        out += length + struct.pack("<I", masked_crc(length)) + p + struct.pack("<I", masked_crc(p))
    return bytes(out)
