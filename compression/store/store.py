"""`ModelStore`: find, verify and publish versioned model artefacts under one root folder."""

from __future__ import annotations

import logging
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from compression.store.manifest import MANIFEST_NAME, Manifest, combined_sha256, file_sha256

log = logging.getLogger("minutes.store")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class StoreError(Exception):
    """The store or one of its artefacts is unusable."""


class UnknownModelError(StoreError, KeyError):
    """No artefact of that name (or version) in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown model"


class ChecksumError(StoreError):
    """An artefact's files do not match its manifest."""


def version_key(version: str) -> tuple:
    """Natural order, numbers as numbers: "10" after "9", "1.10" after "1.9", "v10" after "v9"
    (`sorted(versions, key=version_key)`). The store's one version order: the server, the
    recogniser and the speaker embedder all take "newest" from it."""
    return tuple((0, int(p)) if p.isdigit() else (1, p)
                 for part in re.split(r"[.\-_]", version) for p in re.split(r"(\d+)", part) if p)


def next_version(versions: list[str]) -> str:
    """The version after the newest of `versions` (oldest first), in its form: "9" -> "10",
    "v2" -> "v3", "2026.1" -> "2026.2"; "1" for the first."""
    if not versions:
        return "1"
    head, digits = re.fullmatch(r"(.*?)(\d*)", versions[-1]).groups()
    if not digits:
        return str(max((int(v) for v in versions if v.isdigit()), default=0) + 1)
    return f"{head}{int(digits) + 1}"


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise StoreError(f"bad model {what} {name!r}: letters, digits, . _ - (max 64)")
    return name


def split_ref(ref: str) -> tuple[str, str | None]:
    """A model reference, `name` or `name/version` (e.g. `default/5`), as (name, version);
    version None means the newest. `StoreError` for anything else (an empty part, a second
    `/`, a character a store folder name cannot have)."""
    name, sep, version = ref.partition("/") if isinstance(ref, str) else ("", "", "")
    if not _NAME.fullmatch(name) or (sep and not _NAME.fullmatch(version)):
        raise StoreError(f"bad model {ref!r}: `name` or `name/version` (e.g. default or default/5), "
                         "each part letters, digits, . _ - (max 64)")
    return name, (version if sep else None)


class ModelStore:
    """A folder of `<name>/<version>/manifest.json` artefacts.

    Reading is cheap (manifests only); `resolve(..., verify=True)` re-hashes the files, which
    is what the server does once when it loads a model.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    # -- reading -------------------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        """The versions of `name` (folders with a manifest, or with a checkpoint another tool
        put there without one), oldest first. Dot-folders are publishes in progress."""
        folder = self.root / name
        if not _NAME.match(name) or not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                 and ((p / MANIFEST_NAME).is_file() or any(p.glob("*.pt")))]
        return sorted(found, key=version_key)

    def manifest(self, name: str, version: str | None = None) -> Manifest:
        versions = self.versions(name)
        if not versions:
            raise UnknownModelError(f"no model {name!r} in store {self.root}")
        version = versions[-1] if version is None else str(version)
        if version not in versions:
            raise UnknownModelError(f"model {name!r} has no version {version!r} (it has {', '.join(versions)})")
        path = self.root / name / version / MANIFEST_NAME
        if not path.is_file():  # a bare checkpoint folder: an unsealed manifest of its files
            return Manifest.read_folder(path.parent)
        try:
            return Manifest.read(path)
        except (ValueError, TypeError, OSError) as exc:
            raise StoreError(f"{name}/{version}: unreadable manifest: {exc}") from exc

    def list(self) -> list[Manifest]:
        """The newest version of each model (unreadable manifests are skipped)."""
        out = []
        for name in self.names():
            try:
                out.append(self.manifest(name))
            except StoreError:
                continue
        return out

    def verify(self, name: str, version: str | None = None) -> Manifest:
        """Re-hash every file the manifest names; raise `ChecksumError` on any difference.
        An unsealed manifest (written by another tool) has nothing to check: it is returned
        with a warning."""
        m = self.manifest(name, version)
        folder = self.root / name / m.version
        if not m.sealed:
            log.warning("%s/%s has no checksums in its manifest: loaded unverified (ModelStore.seal adds them)",
                        name, m.version)
            return m
        for rel, digest in m.files.items():
            path = folder / rel
            if not path.is_file():
                raise ChecksumError(f"{name}/{m.version}: missing file {rel}")
            if file_sha256(path) != digest:
                raise ChecksumError(f"{name}/{m.version}: {rel} does not match its sha256")
        if combined_sha256(m.files) != m.sha256:
            raise ChecksumError(f"{name}/{m.version}: manifest sha256 does not match its files")
        return m

    def resolve(self, name: str, version: str | None = None, verify: bool = True) -> tuple[Path, Manifest]:
        """The artefact folder and manifest of `name` (newest version), checked when `verify`."""
        m = self.verify(name, version) if verify else self.manifest(name, version)
        return self.root / name / m.version, m

    # -- writing -------------------------------------------------------------------------
    def seal(self, name: str, version: str | None = None, architecture: str | None = None) -> Manifest:
        """Add checksums (and the standard fields) to an artefact whose manifest another tool
        wrote; its original keys stay in `extra`. Sealing a sealed manifest changes nothing."""
        m = self.manifest(name, version)
        if m.sealed:
            return m
        folder = self.root / name / m.version
        files = _source_files(folder)
        digests = {rel: file_sha256(p) for rel, p in files.items()}
        sealed = replace(m, files=digests, sha256=combined_sha256(digests),
                         size_bytes=sum(p.stat().st_size for p in files.values()),
                         architecture=architecture or m.architecture)
        sealed.write(folder / MANIFEST_NAME)
        return sealed

    def publish(
        self,
        source: Path | Iterable[Path],
        name: str,
        architecture: str,
        version: str | None = None,
        **fields: Any,
    ) -> Manifest:
        """Copy an artefact into the store as `name/version` and write its manifest.

        `source` is a folder (all its files, recursively, except an old manifest) or a list
        of files. `version` defaults to the one after the newest (`next_version`). Other
        manifest fields (parameters, sparsity, metrics, base, compression, description,
        sample_rate, extra) pass through. An existing version is never overwritten.
        """
        check_name(name)
        if version is None:
            version = next_version(self.versions(name))
        check_name(str(version), "version")
        dest = self.root / name / str(version)
        if dest.exists():
            raise StoreError(f"{name}/{version} already exists in {self.root}")
        files = _source_files(source)
        if not files:
            raise StoreError("nothing to publish: no files")
        tmp = dest.with_name(f".{version}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        digests: dict[str, str] = {}
        size = 0
        for rel, path in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            digests[rel] = file_sha256(target)
            size += target.stat().st_size
        manifest = Manifest(
            name=name,
            version=str(version),
            architecture=architecture,
            files=digests,
            sha256=combined_sha256(digests),
            size_bytes=size,
            created=fields.pop("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
            **fields,
        )
        manifest.write(tmp / MANIFEST_NAME)
        tmp.rename(dest)  # a half-copied artefact is never visible under its version
        return manifest


def _source_files(source: Path | Iterable[Path]) -> dict[str, Path]:
    if isinstance(source, (str, Path)):
        root = Path(source)
        if root.is_file():
            return {root.name: root}
        return {
            str(p.relative_to(root)): p
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST_NAME and "__pycache__" not in p.parts
        }
    return {Path(p).name: Path(p) for p in source}
