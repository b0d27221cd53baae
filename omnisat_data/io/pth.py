"""A float32 array as the file `torch.save(torch.from_numpy(array), f)` writes, without importing torch.

The TreeSatAI-TS build writes two .pth files per tile; importing torch for them cost each build ~3 s of
CPU and ~250 MB of memory, and made torch a requirement of building a dataset. The format is PyTorch's
(`torch/serialization.py`, `caffe2/serialize/inline_container.cc`): a zip archive of stored records under
one folder (`archive/`): `data.pkl` (the tensor as a pickle, protocol 2, whose storage is the persistent id
"0"), `.format_version`, `.storage_alignment`, `byteorder`, `data/0` (the raw little-endian values, at an
offset that is a multiple of 64), `version`, `.data/serialization_id`; every local header carries the
"FB" padding field that aligns its record, and the archive ends with zip64 records, as PyTorch's writer
(miniz) leaves them. The bytes are torch.save's (tests/test_pth.py compares them, and loads the files with
torch.load, `weights_only` and `mmap` included).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

ALIGNMENT = 64
FOLDER = "archive"  # what torch.save names the records' folder when it writes to a buffer
# The first half of the serialization id: c10::hash_combine over the hashes of the record names (std::hash of
# libstdc++, as Linux builds of PyTorch compute them). Every file here holds the same six records before
# the id, so it is one number, read off torch.save's output (tests/test_pth.py checks it still is).
RECORD_NAMES_HASH = 15728199511854643026
MASK64 = (1 << 64) - 1


def _int(value: int) -> bytes:
    """A non-negative int as pickle protocol 2 writes it."""
    if value < 0x100:
        return b"K" + bytes([value])
    if value < 0x10000:
        return b"M" + struct.pack("<H", value)
    if value < 0x80000000:
        return b"J" + struct.pack("<i", value)
    raise ValueError(f"{value} elements: too many for one record here")


def _tuple(values: tuple[int, ...], memo: int) -> bytes:
    body = b"".join(_int(v) for v in values)
    if not values:
        return b")"  # pickle memoizes no empty tuple
    closed = body + b"\x85\x86\x87"[len(values) - 1 : len(values)] if len(values) <= 3 else b"(" + body + b"t"
    return closed + b"q" + bytes([memo])


def _text(value: str, memo: int) -> bytes:
    raw = value.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw + b"q" + bytes([memo])


def tensor_pickle(shape: tuple[int, ...], strides: tuple[int, ...]) -> bytes:
    """`data.pkl` of a contiguous float32 CPU tensor of `shape` and `strides` (in elements):
    torch._utils._rebuild_tensor_v2 of storage "0", offset 0, no grad, no hooks."""
    if not shape:
        raise ValueError("a tensor of at least one dimension")
    numel = int(np.prod(shape, dtype=np.int64))
    return b"".join([
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00((",
        _text("storage", 1), b"ctorch\nFloatStorage\nq\x02", _text("0", 3), _text("cpu", 4), _int(numel),
        b"tq\x05QK\x00", _tuple(tuple(int(s) for s in shape), 6), _tuple(tuple(int(s) for s in strides), 7),
        b"\x89ccollections\nOrderedDict\nq\x08)Rq\ttq\nRq\x0b.",
    ])


def _hash_combine(seed: int, value: int) -> int:
    """c10::hash_combine on 64-bit size_t."""
    return (seed ^ ((value + 0x9E3779B9 + (seed << 6) + (seed >> 2)) & MASK64)) & MASK64


def _records(array: np.ndarray) -> list[tuple[str, bytes]]:
    array = np.ascontiguousarray(array, dtype="<f4")
    strides = tuple(s // array.itemsize for s in array.strides)  # as torch.from_numpy takes them
    data = array.tobytes()
    records = [("data.pkl", tensor_pickle(array.shape, strides)), (".format_version", b"1"),
               (".storage_alignment", b"64"), ("byteorder", b"little"), ("data/0", data), ("version", b"3\n")]
    crcs = 0  # the second half: the records' CRC32s combined in order (an empty record has no descriptor)
    for _, body in records:
        if body:
            crcs = _hash_combine(crcs, zlib.crc32(body))
    return records + [(".data/serialization_id", f"{RECORD_NAMES_HASH:020d}{crcs:020d}".encode())]


def pth_bytes(array: np.ndarray) -> bytes:
    """The bytes of a .pth file holding `array` as a float32 tensor."""
    out = bytearray()
    central = bytearray()
    records = _records(array)
    for name, body in records:
        full = f"{FOLDER}/{name}".encode()
        start = len(out) + 30 + len(full) + 4  # where the data would begin with an empty padding field
        pad = -start % ALIGNMENT
        extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        crc = zlib.crc32(body)
        offset = len(out)
        # UTF-8 names; sizes and CRC in a descriptor after the data (none after an empty record, as miniz)
        flags = 0x0808 if body else 0x0800
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, flags, 0, 0, 0, 0, 0, 0, len(full), len(extra))
        out += full + extra + body
        if body:
            out += struct.pack("<IIII", 0x08074B50, crc, len(body), len(body))
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, flags, 0, 0, 0, crc, len(body), len(body),
                               len(full), 0, 0, 0, 0, 0, offset) + full
    directory = len(out)
    out += central
    zip64 = len(out)
    n = len(records)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x2D, 0, 0, n, n, len(central), directory)
    out += struct.pack("<IIQI", 0x07064B50, 0, zip64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), directory, 0)
    return bytes(out)
