"""The model store: publish, list, resolve newest, and refuse artefacts whose bytes changed."""

from __future__ import annotations

import hashlib
import json

import pytest

from compression.store import ChecksumError, Manifest, ModelStore, StoreError, UnknownModelError, next_version, split_ref


def _artefact(tmp_path, payload: bytes = b"weights"):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True, exist_ok=True)
    (src / "model.pt").write_bytes(payload)
    (src / "sub" / "tokens.txt").write_text("a\nb\n")
    return src


def test_publish_resolve_and_versions(tmp_path):
    store = ModelStore(tmp_path / "store")
    m1 = store.publish(_artefact(tmp_path), "tiny", "emformer-transducer", parameters=10, metrics={"wer": 0.5})
    assert m1.version == "1" and set(m1.files) == {"model.pt", "sub/tokens.txt"}
    assert m1.size_bytes == len(b"weights") + 4
    m2 = store.publish(_artefact(tmp_path, b"pruned"), "tiny", "emformer-transducer", sparsity=0.5,
                       base="tiny/1", compression={"scheme": "ffn-width", "keep": 0.5})
    assert m2.version == "2"
    folder, got = store.resolve("tiny")
    assert got == m2 and (folder / "model.pt").read_bytes() == b"pruned"
    assert store.resolve("tiny", "1")[1] == m1
    assert store.versions("tiny") == ["1", "2"]
    assert [m.name for m in store.list()] == ["tiny"]
    summary = store.list()[0].summary()
    assert "files" not in summary and summary["sparsity"] == 0.5 and summary["base"] == "tiny/1"
    # a manifest round-trips, and keys from a newer producer are kept, not fatal
    data = json.loads((folder / "manifest.json").read_text())
    data["future_field"] = 1
    assert Manifest.from_dict(data).extra["future_field"] == 1


def test_checksum_refuses_tampered_or_missing_files(tmp_path):
    store = ModelStore(tmp_path / "store")
    store.publish(_artefact(tmp_path), "tiny", "x")
    folder, _ = store.resolve("tiny")
    (folder / "model.pt").write_bytes(b"weightz")
    with pytest.raises(ChecksumError, match="model.pt"):
        store.resolve("tiny")
    store.resolve("tiny", verify=False)  # reading the manifest alone still works
    (folder / "model.pt").unlink()
    with pytest.raises(ChecksumError, match="missing"):
        store.verify("tiny")


def test_unknown_names_versions_and_bad_input(tmp_path):
    store = ModelStore(tmp_path / "store")
    assert store.list() == [] and store.names() == []
    with pytest.raises(UnknownModelError):
        store.resolve("nope")
    store.publish(_artefact(tmp_path), "tiny", "x", version="2026.1")
    with pytest.raises(UnknownModelError):
        store.manifest("tiny", "9")
    with pytest.raises(StoreError):
        store.publish(_artefact(tmp_path), "tiny", "x", version="2026.1")  # never overwritten
    with pytest.raises(StoreError):
        store.publish(_artefact(tmp_path), "../evil", "x")
    (tmp_path / "store" / "broken" / "1").mkdir(parents=True)
    (tmp_path / "store" / "broken" / "1" / "manifest.json").write_text("{not json")
    assert [m.name for m in store.list()] == ["tiny"]  # an unreadable manifest is skipped
    with pytest.raises(StoreError):
        store.manifest("broken")


def test_versions_sort_naturally(tmp_path):
    store = ModelStore(tmp_path / "store")
    for v in ("9", "10", "2"):
        store.publish(_artefact(tmp_path), "m", "x", version=v)
    assert store.versions("m") == ["2", "9", "10"] and store.manifest("m").version == "10"


def test_prefixed_versions_sort_by_their_numbers_and_publish_continues_them(tmp_path):
    """store/speaker's versions are v1, v2, ...: "v10" is newer than "v9" (as text it is older),
    and a publish without a version takes the next one in the same form."""
    store = ModelStore(tmp_path / "store")
    for v in ("v9", "v10", "v2"):
        store.publish(_artefact(tmp_path, v.encode()), "speaker", "x", version=v)
    (tmp_path / "store" / "speaker" / ".v11.tmp").mkdir()  # a publish in progress is not a version
    assert store.versions("speaker") == ["v2", "v9", "v10"]
    folder, m = store.resolve("speaker")
    assert m.version == "v10" and (folder / "model.pt").read_bytes() == b"v10"
    assert store.publish(_artefact(tmp_path), "speaker", "x").version == "v11"
    assert [next_version(v) for v in ([], ["9"], ["1.9"], ["2026.1"], ["latest"])] == ["1", "10", "1.10", "2026.2", "1"]


@pytest.mark.parametrize("ref, want", [("default", ("default", None)), ("default/5", ("default", "5")),
                                       ("tiny-b/2026.1", ("tiny-b", "2026.1"))])
def test_split_ref_reads_name_and_version(ref, want):
    assert split_ref(ref) == want


@pytest.mark.parametrize("ref", ["", "/", "default/", "/5", "default/5/6", "../x", "default/..", "a b", "default\n",
                                 None, 5, "x" * 65])
def test_split_ref_refuses_anything_else(ref):
    with pytest.raises(StoreError):
        split_ref(ref)


def test_a_manifest_from_another_tool_loads_unverified_until_sealed(tmp_path):
    folder = tmp_path / "store" / "speaker" / "v1"
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"speaker weights")
    (folder / "manifest.json").write_text(json.dumps({"name": "speaker", "version": "v1", "file": "model.pt",
                                                      "eer_percent": {"all": 4.2}}))
    store = ModelStore(tmp_path / "store")
    m = store.manifest("speaker")
    assert (m.name, m.version, m.architecture, m.sealed) == ("speaker", "v1", "unknown", False)
    assert m.size_bytes == len(b"speaker weights") and m.extra["eer_percent"] == {"all": 4.2}
    assert store.list()[0].summary()["sealed"] is False
    assert store.resolve("speaker")[1] == m  # nothing to verify against: loads, with a warning
    sealed = store.seal("speaker", architecture="ecapa")
    assert sealed.sealed and sealed.architecture == "ecapa" and set(sealed.files) == {"model.pt"}
    assert store.manifest("speaker") == sealed and sealed.extra["file"] == "model.pt"
    (folder / "model.pt").write_bytes(b"changed")
    with pytest.raises(ChecksumError):
        store.resolve("speaker")


def test_a_bare_checkpoint_folder_is_an_unsealed_version(tmp_path):
    folder = tmp_path / "store" / "default" / "3"
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"w")
    (tmp_path / "store" / "default" / ".4.tmp").mkdir()  # a publish in progress is invisible
    store = ModelStore(tmp_path / "store")
    assert store.versions("default") == ["3"]
    m = store.resolve("default")[1]
    assert not m.sealed and m.size_bytes == 1
    assert store.seal("default").files == {"model.pt": hashlib.sha256(b"w").hexdigest()}
