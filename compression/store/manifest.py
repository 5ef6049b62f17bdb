"""The manifest of one model artefact: what it is, how big, how good, and its checksums."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"


def file_sha256(path: Path, block: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in blocks so big checkpoints need no big buffers."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def combined_sha256(files: dict[str, str]) -> str:
    """One digest over every file's digest, so a manifest names its artefact with one string."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """`manifest.json` of `store/<name>/<version>/`.

    `files` maps each artefact file (path relative to the version folder) to its sha256;
    `sha256` is `combined_sha256(files)`. A variant made by pruning/quantisation names its
    parent in `base` ("name/version") and its recipe in `compression` (free-form, e.g.
    {"scheme": "ffn-width", "keep": 0.5}); `sparsity` is the fraction of zero weights.
    """

    name: str
    version: str
    architecture: str  # e.g. "emformer-transducer"; the recogniser checks it understands it
    files: dict[str, str]  # relative path -> sha256
    sha256: str  # combined_sha256(files)
    size_bytes: int  # total bytes of the files
    parameters: int | None = None  # number of model parameters
    sparsity: float = 0.0  # fraction of zero weights, in [0, 1]
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. {"wer": 0.21, "rtf": 0.1}
    sample_rate: int = 16000  # the rate the model expects
    created: str = ""  # ISO-8601 UTC
    base: str | None = None  # "name/version" this artefact was derived from
    compression: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # anything else a producer wants kept

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        names = {f.name for f in fields(cls)}
        missing = {"name", "version", "architecture", "files", "sha256", "size_bytes"} - set(data)
        if missing:
            raise ValueError(f"manifest lacks {sorted(missing)}")
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        if extra:  # keep unknown keys from newer producers instead of failing on them
            known["extra"] = {**known.get("extra", {}), **extra}
        known["version"] = str(known["version"])
        return cls(**known)

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        """The manifest at `store/<name>/<version>/manifest.json`. The folder names are the
        store's address of the artefact, so they win over the file's own name/version. A
        manifest written by another tool (no `files`/`sha256`) is read as unsealed: its keys
        are kept in `extra` and it loads unverified (see `ModelStore.seal`)."""
        path = Path(path)
        data = json.loads(path.read_text()) if path.is_file() else {}
        if not isinstance(data, dict):
            raise ValueError("a manifest is a JSON object")
        data = {**data, "name": path.parent.parent.name, "version": path.parent.name}
        if "files" not in data or "sha256" not in data:
            data.setdefault("architecture", data.get("arch", "unknown"))
            data.setdefault("size_bytes", sum(p.stat().st_size for p in path.parent.rglob("*")
                                              if p.is_file() and p.name != path.name))
            data["files"], data["sha256"] = {}, ""
        return cls.from_dict(data)

    @classmethod
    def read_folder(cls, folder: Path) -> "Manifest":
        """An unsealed manifest for a version folder that has files but no manifest."""
        return cls.read(Path(folder) / MANIFEST_NAME)

    @property
    def sealed(self) -> bool:
        """Whether the manifest carries checksums to verify the files against."""
        return bool(self.files) and bool(self.sha256)

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    def summary(self) -> dict[str, Any]:
        """The public fields for `GET /v1/models` (no per-file list)."""
        d = self.to_dict()
        d.pop("files")
        d["sealed"] = self.sealed
        return d
