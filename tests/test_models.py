import hashlib

import pytest

from engine import models
from engine.errors import ModelError


@pytest.fixture()
def tiny_model(tmp_path, monkeypatch):
    """A known model whose three parts are small temp files."""
    parts = [tmp_path / f"part{i}.bin" for i in range(3)]
    for i, part in enumerate(parts):
        part.write_bytes(bytes([i]) * (1000 + i))
    whole = b"".join(p.read_bytes() for p in parts)
    model = models.KnownModel("tiny", "tiny.gguf", len(whole), hashlib.sha256(whole).hexdigest(),
                              ("tiny-part1", "tiny-part2", "tiny-part3"), "1.0")
    monkeypatch.setitem(models.KNOWN_MODELS, "tiny", model)
    monkeypatch.setattr(models, "find_part", lambda m, i: parts[i])
    monkeypatch.setenv("FIMBLE_HOME", str(tmp_path / "home"))
    return model, parts, whole


def test_assemble_concatenates_verifies_and_reports_progress(tiny_model):
    model, _, whole = tiny_model
    seen = []
    path = models.assemble("tiny", lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == whole
    assert seen[-1] == (len(whole), len(whole)) and len(seen) == 3
    assert models.is_verified(model, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.gguf", "tiny.gguf.verified"]
    assert not list(path.parent.glob("*.part"))


def test_assemble_twice_does_not_rewrite(tiny_model):
    path = models.assemble("tiny")
    mtime = path.stat().st_mtime_ns
    assert models.assemble("tiny").stat().st_mtime_ns == mtime


def test_hash_mismatch_writes_nothing_and_says_why(tiny_model):
    _, parts, _ = tiny_model
    data = bytearray(parts[1].read_bytes())
    data[10] ^= 0xFF
    parts[1].write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 .* expected .*nothing was written"):
        models.assemble("tiny")
    assert not list((models.models_dir()).glob("tiny*"))
    assert not list(models.models_dir().glob(".*part"))


def test_wrong_total_size_is_refused(tiny_model):
    _, parts, _ = tiny_model
    parts[2].write_bytes(b"short")
    with pytest.raises(ModelError, match="add up to"):
        models.assemble("tiny")


def test_verify_removes_a_damaged_file(tiny_model):
    path = models.assemble("tiny")
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    assert not models.is_verified(tiny_model[0], path)  # mtime changed, the stamp no longer vouches
    with pytest.raises(ModelError, match="damaged and has been removed"):
        models.verify("tiny")
    assert not path.exists()


def test_missing_part_package_names_the_package(monkeypatch):
    model = models.KnownModel("ghost", "ghost.gguf", 1, "0" * 64, ("fimble-no-such-part-pkg",), "9.9")
    with pytest.raises(ModelError, match=r"part 1 of 1 .*pip install fimble-no-such-part-pkg==9\.9"):
        models.find_part(model, 0)


def test_installed_default_parts_are_found():
    model = models.KNOWN_MODELS[models.DEFAULT_MODEL]
    sizes = [models.find_part(model, i).stat().st_size for i in range(6)]
    assert sum(sizes) == model.size


def test_unknown_name_lists_known_names():
    with pytest.raises(ModelError, match="qwen2.5-coder-0.5b"):
        models.known_model("gpt-17")


def test_fimble_home_env_moves_everything(tmp_path, monkeypatch):
    monkeypatch.setenv("FIMBLE_HOME", str(tmp_path))
    assert models.models_dir() == tmp_path / "models"
