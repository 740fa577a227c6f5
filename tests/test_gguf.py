import pytest
from gguf_writer import write_gguf

from engine.errors import ModelError
from engine.gguf import read_gguf
from engine.models import resolve_model


def test_metadata_and_tensors_read_back(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", {"general.architecture": "qwen2", "tokenizer.ggml.tokens": ["a", "b"],
                                             "tokenizer.ggml.add_bos_token": False, "n": 7},
                      tensors=[("w", (8, 4), 0)])
    gguf = read_gguf(path)
    assert gguf.architecture == "qwen2"
    assert gguf.tokens == ["a", "b"]
    assert gguf.metadata["n"] == 7 and gguf.metadata["tokenizer.ggml.add_bos_token"] is False
    assert gguf.tensors[0].shape == (8, 4) and gguf.tensors[0].nbytes() == 128
    assert gguf.required_size() == gguf.file_size


def test_truncated_tensor_data_is_refused_with_the_path(tmp_path):
    path = write_gguf(tmp_path / "cut.gguf", {"a": 1}, tensors=[("w", (64, 64), 0)], data_bytes=100)
    with pytest.raises(ModelError, match=r"cut\.gguf: truncated"):
        read_gguf(path)


def test_truncated_header_is_refused(tmp_path):
    full = write_gguf(tmp_path / "full.gguf", {"tokenizer.ggml.tokens": ["x" * 50] * 10})
    cut = tmp_path / "half.gguf"
    cut.write_bytes(full.read_bytes()[:200])
    with pytest.raises(ModelError, match="truncated"):
        read_gguf(cut)


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(ModelError, match="not a GGUF file"):
        resolve_model(str(path))


def test_missing_model_names_the_choices(tmp_path):
    with pytest.raises(ModelError, match="neither a file, a folder, nor a known name"):
        resolve_model(str(tmp_path / "nope.gguf"))


def test_hf_folder_needs_config(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)).format == "hf"
