"""The model store: a directory of versioned, checksummed model artefacts.

Layout: `<root>/<name>/<version>/manifest.json` beside the artefact's files. The server
resolves a model by name, or `name/version` (`split_ref`; newest version unless one is asked for), verifies every file's
sha256 against the manifest, and hands the folder and its typed `Manifest` to
`decoding.recogniser.Recogniser.load` (or `Recogniser.from_store(store, ref)` does all of it).
Pruned or quantised variants are new names (or versions) whose manifest says what they were
made from (`base`) and how (`compression`), so `GET /v1/models` can show the trade-offs.
"""

from compression.store.manifest import Manifest, file_sha256
from compression.store.store import (ChecksumError, ModelStore, StoreError, UnknownModelError, next_version, split_ref,
                                     version_key)

__all__ = ["ChecksumError", "Manifest", "ModelStore", "StoreError", "UnknownModelError", "file_sha256", "next_version",
           "split_ref", "version_key"]
