"""§21 golden vectors (spec/vectors/dataset): each decodes to the data whose sha256 the manifest
records, and encoding the same inputs again gives the same bytes, in the environment the manifest
records; in any other environment a reader must refuse (EnvironmentMismatchError), not guess."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from script_modules import load_script

from nncodec import mdl
from nncodec.errors import CorruptFileError
from nncodec.mdl import env
from nncodec.mdl.kinds import SideInfo

ROOT = Path(__file__).resolve().parent.parent
DIR = ROOT / "spec" / "vectors" / "dataset"
MANIFEST = json.loads((DIR / "manifest.json").read_text(encoding="utf-8"))
SAME_ENV = MANIFEST["env"] == env.current()


def _model_arch(data: bytes) -> str | None:
    from nncodec.container.reader import Container

    with Container(data) as c:
        return c.header["dataset"]["model"].get("arch")


def _same_env(arch: str | None, recorded: dict) -> bool:
    """The environment matches the `recorded` one in what the model depends on (a `cm` model, which
    computes in integers: constriction only), by the reader's own rule."""
    return not env.differences(recorded, env.CM_KEYS if arch == "cm" else None)


def _check_vector(folder: Path, manifest: dict, entry: dict) -> bytes:
    """The vector's file (its sha256 checked); it decodes to the recorded data in the recorded
    environment, and anywhere else it is refused with EnvironmentMismatchError."""
    data = (folder / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    side = SideInfo.from_idx_bytes((folder / entry["side"]).read_bytes()) if "side" in entry else None
    arch = _model_arch(data)
    if not _same_env(arch, manifest["env"]):
        with pytest.raises(mdl.EnvironmentMismatchError):
            mdl.decode(data, side)
        return data
    if "cpu" not in manifest["env"] and arch != "cm":
        # written before the CPU kernel family was recorded: on another family (AVX2 vs AVX-512) the float
        # tables differ and the reader must refuse the stream as corrupt; it never returns other data
        try:
            out = mdl.decode(data, side)
        except CorruptFileError:
            return data
    else:
        out = mdl.decode(data, side)
    assert len(out) == entry["data_bytes"] and hashlib.sha256(out).hexdigest() == entry["data_sha256"]
    return data


@pytest.mark.parametrize("entry", MANIFEST["vectors"], ids=lambda e: e["file"])
def test_dataset_vector_decodes_to_its_data(entry: dict) -> None:
    _check_vector(DIR, MANIFEST, entry)


def test_dataset_vectors_encode_identically() -> None:
    files, manifest = load_script("spec/make_vectors.py").dataset_vectors()
    assert {e["file"] for e in manifest["vectors"]} == {e["file"] for e in MANIFEST["vectors"]}
    if SAME_ENV:
        for name, data in files.items():
            assert data == (DIR / name).read_bytes(), name


LEGACY = ROOT / "tests" / "data" / "dataset_format2_0"  # the §21 vectors as written before header dictionary 1
LEGACY_MANIFEST = json.loads((LEGACY / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("entry", LEGACY_MANIFEST["vectors"], ids=lambda e: e["file"])
def test_dataset_files_written_before_the_header_dictionary_still_decode(entry: dict) -> None:
    """Format 2.0 dataset files (JSON or zstd headers, no `average`, doubling blocks) read as before."""
    from nncodec.container.reader import Container

    data = _check_vector(LEGACY, LEGACY_MANIFEST, entry)
    with Container(data) as c:
        assert c.preamble.minor == 0 and c.preamble.header_encoding in (0, 1)


def test_current_dataset_vectors_use_header_dictionary_1() -> None:
    from nncodec.container import header_dict
    from nncodec.container.reader import Container

    assert (ROOT / "spec" / "header-dict-1.txt").read_bytes() == header_dict.DICT_1
    assert hashlib.sha256(header_dict.DICT_1).hexdigest() == header_dict.DICT_1_SHA256
    for entry in MANIFEST["vectors"]:
        with Container((DIR / entry["file"]).read_bytes()) as c:
            assert (c.preamble.minor, c.preamble.header_encoding) == (3, 5), entry["file"]
