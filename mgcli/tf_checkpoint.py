"""Read a TensorFlow checkpoint (a "tensor bundle") without TensorFlow.

A bundle is two files. `NAME.index` is a LevelDB-style sorted table: uncompressed blocks of
prefix-compressed key/value entries, an index block pointing at them, and a 48-byte footer
pointing at the index block. Each key is a variable name; each value is a BundleEntryProto
(dtype, shape, and where the tensor's raw little-endian bytes sit in `NAME.data-00000-of-00001`).
The empty key holds the bundle header and is skipped. Only what musicnn's checkpoints use is
supported: one data shard, plain (unsliced) tensors, no block compression.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from . import MgcError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5  # compression type (1 byte) + CRC (4 bytes), after every block
# TensorFlow's DataType enum values for the tensor types a checkpoint may hold.
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16, 10: np.bool_}


def _varint(buffer: bytes, pos: int) -> tuple[int, int]:
    """A protobuf/LevelDB base-128 varint at `pos`: (value, position after it)."""
    value = shift = 0
    while True:
        byte = buffer[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _block(table: bytes, handle: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of the block a BlockHandle (varint offset, varint size) points at."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    if table[offset + size] != 0:
        raise MgcError("compressed checkpoint index blocks are not supported")
    block = table[offset : offset + size]
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts  # entries stop where the restart array starts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_length]))
        pos += value_length
    return entries


def _fields(message: bytes) -> list[tuple[int, int | bytes]]:
    """A protobuf message's (field number, value) pairs: ints for varint/fixed, bytes for length-delimited."""
    fields, pos = [], 0
    while pos < len(message):
        tag, pos = _varint(message, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _varint(message, pos)
        elif wire_type == 2:
            length, pos = _varint(message, pos)
            value, pos = message[pos : pos + length], pos + length
        elif wire_type == 5:
            value, pos = struct.unpack_from("<I", message, pos)[0], pos + 4
        elif wire_type == 1:
            value, pos = struct.unpack_from("<Q", message, pos)[0], pos + 8
        else:
            raise MgcError(f"unsupported protobuf wire type {wire_type} in checkpoint index")
        fields.append((number, value))
    return fields


def _entry(value: bytes) -> tuple[type, tuple[int, ...], int, int, int]:
    """BundleEntryProto: (dtype, shape, shard id, offset, size in bytes)."""
    dtype, shape, shard, offset, size = None, (), 0, 0, 0
    for number, field in _fields(value):
        if number == 1:
            dtype = DTYPES.get(field)
            if dtype is None:
                raise MgcError(f"unsupported tensor dtype {field} in checkpoint")
        elif number == 2:  # TensorShapeProto: repeated Dim (field 2) holding size (field 1)
            shape = tuple(
                next((size for n, size in _fields(dim) if n == 1), 0) for n, dim in _fields(field) if n == 2
            )
        elif number == 3:
            shard = field
        elif number == 4:
            offset = field
        elif number == 5:
            size = field
        elif number == 7:
            raise MgcError("sliced tensors in checkpoints are not supported")
    return dtype, shape, shard, offset, size


def read_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of the bundle at `prefix` (the path without `.index`), by variable name."""
    prefix = str(prefix)
    index_path, data_path = Path(prefix + ".index"), Path(prefix + ".data-00000-of-00001")
    if not index_path.is_file() or not data_path.is_file():
        raise MgcError(f"{prefix}: no TensorFlow checkpoint (.index and .data-00000-of-00001) there")
    table, data = index_path.read_bytes(), data_path.read_bytes()
    if len(table) < FOOTER_BYTES or struct.unpack_from("<Q", table, len(table) - 8)[0] != TABLE_MAGIC:
        raise MgcError(f"{index_path}: not a TensorFlow checkpoint index")
    footer = table[-FOOTER_BYTES:]
    _, pos = _varint(footer, 0)  # the metaindex handle: unused
    _, pos = _varint(footer, pos)
    tensors = {}
    for _, data_handle in _block(table, footer[pos:]):
        for key, value in _block(table, data_handle):
            if not key:  # the bundle header
                continue
            dtype, shape, shard, offset, size = _entry(value)
            if shard != 0:
                raise MgcError("checkpoints with several data shards are not supported")
            array = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=size // np.dtype(dtype).itemsize, offset=offset)
            tensors[key.decode()] = array.reshape(shape).copy()
    return tensors
