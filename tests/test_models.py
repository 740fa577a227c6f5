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
    assert sorted(p.name for p in path.parent.iterdir()) == [".assemble.lock", "tiny.gguf", "tiny.gguf.verified"]
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


def test_a_planted_stamp_symlink_is_replaced_not_followed(tiny_model, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    folder = models.models_dir()
    folder.mkdir(parents=True)
    (folder / "tiny.gguf.verified").symlink_to(victim)
    (folder / "tiny.gguf").symlink_to(tmp_path / "victim2.txt")
    path = models.assemble("tiny")
    assert victim.read_text() == "keep me" and not (tmp_path / "victim2.txt").exists()
    assert not path.is_symlink() and not (folder / "tiny.gguf.verified").is_symlink()
    assert path.read_bytes() == tiny_model[2]


def test_an_unwritable_home_is_one_clear_model_error(tiny_model, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FIMBLE_HOME", str(blocker / "home"))  # a folder cannot be made under a file
    with pytest.raises(ModelError, match=r"cannot write model tiny .* set FIMBLE_HOME to a writable folder"):
        models.assemble("tiny")


def test_parts_left_by_a_killed_assembly_are_removed(tiny_model):
    folder = models.models_dir()
    folder.mkdir(parents=True)
    (folder / ".tiny.gguf.abc123.part").write_bytes(b"x" * 500)
    models.assemble("tiny")
    assert not list(folder.glob("*.part"))


def test_two_assemblies_at_once_do_the_work_once(tiny_model, monkeypatch):
    import threading
    import time

    calls = []
    concatenate = models._concatenate

    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(0.3)
        concatenate(*args, **kwargs)

    monkeypatch.setattr(models, "_concatenate", slow)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(models.assemble("tiny"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(paths) == 2 and paths[0].read_bytes() == tiny_model[2]


def test_a_model_path_error_says_less_to_a_remote_client(tmp_path):
    missing, folder, text = tmp_path / "missing.gguf", tmp_path / "folder", tmp_path / "text.gguf"
    folder.mkdir()
    text.write_text("not a model at all, just words" * 4)
    errors = []
    for spec in (missing, folder, text):
        with pytest.raises(ModelError) as info:
            models.resolve_model(str(spec))
        errors.append(info.value)
    assert len({str(e) for e in errors}) == 3  # the user of this machine is told which
    assert {e.public.replace(str(s), "PATH") for e, s in zip(errors, (missing, folder, text), strict=True)} == {
        "model 'PATH' is not a known name, a readable GGUF file or a Hugging Face model folder"}
