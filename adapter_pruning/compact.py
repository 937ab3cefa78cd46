"""Compact, lossless storage of pruned adapters: the nonzero entries of each tensor and where they are.

A pruned adapter saved the usual way (``adapter.safetensors``) is dense: its zeros take as many bytes
as the weights they replace. The *compact file* ``adapter.compact.safetensors`` holds the same
tensors in a few bytes more than their nonzero values, bit for bit recoverable, in safetensors (no
pickle, readable by any safetensors library).

Encoding, per tensor of ``n`` entries of ``s`` bytes each, ``nnz`` of which are *kept* (their bit
pattern is not all zero, so ``-0.0`` and NaN are kept and every dropped entry is ``+0``):

* ``dense`` (``n·s`` bytes): all ``n`` entries, row-major;
* ``bitmask`` (``⌈n/8⌉ + nnz·s``): a packed bitmask of ``⌈n/8⌉`` bytes, entry ``i`` of the row-major
  flattened tensor being bit ``i % 8`` (least significant first) of byte ``i // 8``, padding bits
  zero; and the ``nnz`` kept entries, row-major;
* ``indices`` (``nnz·(t + s)``): the kept entries' flat row-major positions, increasing, in the
  smallest unsigned type of ``t`` bytes that holds ``n − 1`` (uint8, uint16, uint32, uint64); and the
  kept entries.

Each tensor takes whichever of the three is smallest (ties: dense, then bitmask), so the data never
exceed the dense tensors', and the choice follows the sparsity: a bitmask costs one bit per entry, an
index list ``8·t`` bits per kept entry, so for float32 weights in uint16 positions the bitmask wins
below 93.75 % zeros and the index list above (docs/benchmarks.md, "Compact pruned adapters",
measures this against general-purpose compressors).

Stored tensors (1-D; each the concatenation, in tensor order, of the tensors' parts that use it, and
present only when some tensor does): ``values.<dtype>`` (e.g. ``values.float32``: the stored entries,
all ``n`` for ``dense``), ``bitmask`` (uint8) and ``indices.<uint8|uint16|uint32|uint64>``. So the
safetensors header names a few parts, not every tensor twice.

Metadata: one safetensors metadata key, ``compact``, a JSON object (sorted keys) with ``format``
(:data:`FORMAT`), ``version`` (:data:`VERSION`), ``weights_file`` (the dense file it stands for:
``adapter.safetensors`` or ``pytorch_adapter.bin``), ``metadata`` (that file's own safetensors
metadata, or null), ``tensors`` (per tensor, in name order, ``[name, dtype, shape, encoding,
n_values]``: the offsets into the stored parts are the running sums), ``tensors_sha256`` (sha256 of
the dense tensors: per tensor its name, dtype, shape and raw bytes, see :func:`tensors_digest`) and
``payload_sha256`` (the same digest over the stored parts in key order, preceded by this JSON object
without ``payload_sha256``). :func:`load` checks the payload digest before it decodes anything and
the tensors digest after, and raises :class:`~adapter_pruning.io.CorruptFileError` naming the file for
a truncated or altered file: never a silently wrong tensor.

A *compact adapter folder* is an AdapterHub folder (``adapter_config.json``, head files, ...) holding
the compact file in place of, or beside, its dense weights file. :func:`expand` rebuilds the dense
folder (``adapter.safetensors`` byte-identical to the original when that file had at most one
metadata key, as ``adapters`` and this package write it); :func:`load_adapter` loads it into an
``adapters`` model. :func:`write_beside` adds the compact file to a dense folder (the workflow's
pruned states and ``adapter-prune --format both`` hold both). Every write is atomic.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .io import CorruptFileError, atomic_dir, atomic_path, sha256_file

__all__ = [
    "COMPACT_FILE",
    "ENCODINGS",
    "FORMAT",
    "VERSION",
    "decode",
    "encode",
    "expand",
    "index_dtype",
    "load",
    "load_adapter",
    "read",
    "read_weight_file",
    "save",
    "tensors_digest",
    "to_bytes",
    "verify_beside",
    "weight_file",
    "write_beside",
]

COMPACT_FILE = "adapter.compact.safetensors"
FORMAT = "adapter-pruning/compact"
VERSION = 1
ENCODINGS = ("dense", "bitmask", "indices")
#: The dense weight files of an AdapterHub folder (``adapters``' safetensors and pickle names).
_WEIGHT_FILES = ("adapter.safetensors", "pytorch_adapter.bin")
_META_KEY = "compact"


# --------------------------------------------------------------------------- tensors <-> bytes


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtype(name: str):
    import torch

    dt = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dt


def _raw(t):
    """The tensor's bytes (row-major, CPU) as a uint8 numpy array (a view where possible)."""
    import torch

    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def tensors_digest(items: Iterable, prefix: bytes = b"") -> str:
    """Hex sha256 of ``prefix`` then, per ``(name, tensor)`` of ``items`` in the order given, the
    name, dtype and shape (UTF-8, NUL-separated, shape as ``3,4``) and the tensor's raw bytes."""
    h = hashlib.sha256(prefix)
    for name, t in items:
        h.update(f"{name}\0{_dtype_name(t.dtype)}\0{','.join(map(str, t.shape))}\0".encode())
        h.update(_raw(t))
    return h.hexdigest()


def index_dtype(n: int):
    """The smallest unsigned torch dtype that holds every flat index of an ``n``-entry tensor."""
    import torch

    for bits, dt in ((8, torch.uint8), (16, torch.uint16), (32, torch.uint32)):
        if n <= 1 << bits:
            return dt
    return torch.uint64


def _kept(flat):
    """Bool ``(n,)``: the entries whose bit pattern is not all zero."""
    import torch

    n, size = flat.numel(), flat.element_size()
    return flat.contiguous().view(torch.uint8).reshape(n, size).ne(0).any(dim=1)


def _sizes(n: int, nnz: int, itemsize: int) -> dict[str, int]:
    return {
        "dense": n * itemsize,
        "bitmask": math.ceil(n / 8) + nnz * itemsize,
        "indices": nnz * (index_dtype(n).itemsize + itemsize),
    }


def encode(tensors: Mapping, *, encodings: Sequence[str] = ENCODINGS) -> tuple[dict, list[list]]:
    """Encode ``{name: Tensor}`` (module docstring).

    Args:
        tensors: the dense tensors (any dtype, any device; read on the CPU).
        encodings: the encodings each tensor may take (the smallest wins; ties in the order of
            :data:`ENCODINGS`); ``("dense",)`` stores everything as it is. Benchmarks pass one
            sparse encoding to measure it alone.

    Returns:
        ``(stored, entries)``: the tensors to save (``{key: Tensor}``, 1-D, contiguous, on the CPU)
        and per input tensor, in name order, ``[name, dtype, shape, encoding, n_values]``.
    """
    import numpy as np
    import torch

    bad = [e for e in encodings if e not in ENCODINGS]
    if bad or not encodings:
        raise ValueError(f"encodings must be a non-empty subset of {ENCODINGS}, got {list(encodings)}")
    parts: dict[str, list] = {}
    entries: list[list] = []
    for name in sorted(tensors):
        t = tensors[name].detach().cpu()
        flat = t.contiguous().reshape(-1)
        keep = _kept(flat)
        n, nnz = flat.numel(), int(keep.sum())
        sizes = _sizes(n, nnz, flat.element_size())
        enc = min((e for e in ENCODINGS if e in encodings), key=lambda e: (sizes[e], ENCODINGS.index(e)))
        dtype = _dtype_name(t.dtype)
        values = flat if enc == "dense" else flat[keep]
        parts.setdefault(f"values.{dtype}", []).append(values)
        if enc == "bitmask":
            parts.setdefault("bitmask", []).append(torch.from_numpy(np.packbits(keep.numpy(), bitorder="little")))
        elif enc == "indices":
            idx_dtype = index_dtype(n)
            idx = torch.nonzero(keep).reshape(-1).to(idx_dtype)
            parts.setdefault(f"indices.{_dtype_name(idx_dtype)}", []).append(idx)
        entries.append([name, dtype, list(t.shape), enc, values.numel()])
    stored = {key: torch.cat(chunks).contiguous() for key, chunks in parts.items()}
    return stored, entries


def _header_json(header: Mapping) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def decode(stored: Mapping, entries: Sequence[Sequence], *, source: str = "compact data") -> dict:
    """Inverse of :func:`encode`: the dense tensors ``{name: Tensor}`` (CPU, contiguous).

    Checks that the stored tensors are exactly the ones the entries use, with their dtypes, and
    consumed to their ends; each bitmask's count and padding; each index list's order and range.
    Raises :class:`~adapter_pruning.io.CorruptFileError` naming ``source`` and the tensor. (:func:`load`
    checks the digests first; this catches malformed data handed over directly.)
    """
    import numpy as np
    import torch

    pos: dict[str, int] = {}

    def take(key, count, dtype, name):
        if key not in stored:
            raise CorruptFileError(f"{source}: tensor {name!r}: no stored {key!r}")
        part = stored[key]
        start = pos.get(key, 0)
        if part.dtype != dtype or part.dim() != 1 or start + count > part.numel():
            raise CorruptFileError(
                f"{source}: tensor {name!r}: stored {key!r} is {part.dtype} {tuple(part.shape)}, expected {dtype} "
                f"with at least {start + count} entries"
            )
        pos[key] = start + count
        return part[start : start + count]

    out = {}
    for entry in entries:
        try:
            name, dtype_name, shape, enc, count = entry
            dtype, shape, count = _dtype(dtype_name), tuple(int(s) for s in shape), int(count)
            if enc not in ENCODINGS:
                raise ValueError(f"unknown encoding {enc!r}")
        except (TypeError, ValueError) as exc:
            raise CorruptFileError(f"{source}: malformed entry {entry!r} ({exc})") from exc
        n = math.prod(shape)

        def bad(what, name=name):
            return CorruptFileError(f"{source}: tensor {name!r}: {what}")

        if enc == "dense" and count != n:
            raise bad(f"dense with {count} values for {n} entries")
        values = take(f"values.{dtype_name}", count, dtype, name)
        if enc == "dense":
            out[name] = values.clone().reshape(shape)
            continue
        flat = torch.zeros(n, dtype=dtype)
        if enc == "bitmask":
            bits = take("bitmask", math.ceil(n / 8), torch.uint8, name)
            keep_np = np.unpackbits(bits.numpy(), bitorder="little")
            if keep_np[n:].any():
                raise bad("bitmask has padding bits set")
            keep = torch.from_numpy(keep_np[:n].astype(bool))
            if int(keep.sum()) != count:
                raise bad(f"bitmask marks {int(keep.sum())} entries but {count} values are stored")
            flat[keep] = values
        else:
            idx_dtype = index_dtype(n)
            idx = take(f"indices.{_dtype_name(idx_dtype)}", count, idx_dtype, name).to(torch.int64)
            if count and (int(idx[-1]) >= n or not bool((idx[1:] > idx[:-1]).all())):
                raise bad("indices are not increasing positions inside the tensor")
            flat[idx] = values
        out[name] = flat.reshape(shape)
    unused = {k: (pos.get(k, 0), v.numel()) for k, v in stored.items() if pos.get(k, 0) != v.numel()}
    if unused:
        raise CorruptFileError(f"{source}: stored tensors not used to their ends (used, length): {unused}")
    return out


def to_bytes(
    tensors: Mapping,
    *,
    metadata: Mapping[str, str] | None = None,
    weights_file: str = "adapter.safetensors",
    encodings: Sequence[str] = ENCODINGS,
) -> bytes:
    """The compact file of ``tensors`` as bytes (:func:`save` writes them). ``metadata``: the dense
    file's safetensors metadata, restored by :func:`expand`; ``weights_file``: the dense file's name."""
    from safetensors.torch import save as st_save

    if weights_file not in _WEIGHT_FILES:
        raise ValueError(f"weights_file must be one of {_WEIGHT_FILES}, got {weights_file!r}")
    stored, entries = encode(tensors, encodings=encodings)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "weights_file": weights_file,
        "metadata": None if metadata is None else {str(k): str(v) for k, v in metadata.items()},
        "tensors": entries,
        "tensors_sha256": tensors_digest((k, tensors[k]) for k in sorted(tensors)),
    }
    header["payload_sha256"] = tensors_digest(sorted(stored.items()), prefix=_header_json(header))
    return st_save(stored, metadata={_META_KEY: _header_json(header).decode()})


def save(tensors: Mapping, path, **kwargs) -> int:
    """Write the compact file of ``tensors`` to ``path`` atomically (keywords as :func:`to_bytes`);
    returns its size in bytes."""
    data = to_bytes(tensors, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return len(data)


def _parse(data: bytes, source: str) -> tuple[dict, dict]:
    """``(stored tensors, header)`` of a compact file's bytes; the payload digest checked."""
    from safetensors.torch import load as st_load

    try:
        n = int.from_bytes(data[:8], "little")
        if len(data) < 8 or n > len(data) - 8:
            raise ValueError(f"header of {n} bytes in a file of {len(data)}")
        raw_meta = (json.loads(data[8 : 8 + n]).get("__metadata__") or {}).get(_META_KEY)
        stored = st_load(data)
    except Exception as exc:  # safetensors, json and unicode errors alike: a damaged file
        raise CorruptFileError(
            f"{source}: unreadable compact file ({type(exc).__name__}: {exc}); it is truncated or corrupted"
        ) from exc
    if raw_meta is None:
        raise CorruptFileError(f"{source}: no '{_META_KEY}' metadata: not a compact adapter file, or corrupted")
    try:
        header = json.loads(raw_meta)
        claimed = header.pop("payload_sha256")
        header["tensors"]  # noqa: B018  (must exist)
    except Exception as exc:
        raise CorruptFileError(f"{source}: malformed compact metadata ({type(exc).__name__}: {exc})") from exc
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise CorruptFileError(
            f"{source}: format {header.get('format')!r} version {header.get('version')!r}; this reader reads "
            f"{FORMAT!r} version {VERSION}"
        )
    if tensors_digest(sorted(stored.items()), prefix=_header_json(header)) != claimed:
        raise CorruptFileError(f"{source}: checksum mismatch (payload_sha256); the file is corrupted")
    return stored, header


def read(path) -> tuple[dict, dict]:
    """``({name: Tensor}, header)`` of the compact file ``path``, verified (both digests); ``header``
    is the metadata object of the module docstring, without ``payload_sha256``.

    Raises:
        FileNotFoundError: no such file. CorruptFileError: anything else wrong with it.
    """
    path = Path(path)
    stored, header = _parse(path.read_bytes(), str(path))
    tensors = decode(stored, header["tensors"], source=str(path))
    if tensors_digest((k, tensors[k]) for k in sorted(tensors)) != header.get("tensors_sha256"):
        raise CorruptFileError(f"{path}: decoded tensors differ from their checksum (tensors_sha256)")
    return tensors, header


def load(path) -> dict:
    """The dense tensors ``{name: Tensor}`` stored in the compact file ``path`` (verified; :func:`read`)."""
    return read(path)[0]


# --------------------------------------------------------------------------- folders


def _bit_equal(a: Mapping, b: Mapping) -> bool:
    import torch

    return set(a) == set(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(_raw_t(a[k]), _raw_t(b[k])) for k in a
    )


def _raw_t(t):
    import torch

    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def read_weight_file(path: Path) -> tuple[dict, dict | None]:
    """``(tensors, safetensors metadata or None)`` of a dense weight file."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
        return torch.load(str(path), map_location="cpu", weights_only=True), None
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"{path}: unreadable weight file ({type(exc).__name__}: {exc})") from exc


def weight_file(folder: Path) -> Path:
    """The AdapterHub weight file of ``folder`` (``adapter.safetensors``, else ``pytorch_adapter.bin``)."""
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no dense weight file ({' or '.join(_WEIGHT_FILES)})")


def write_beside(adapter_dir, *, verify: bool = True) -> dict:
    """Add the compact file to the dense AdapterHub folder ``adapter_dir`` (from its
    ``adapter.safetensors``, else ``pytorch_adapter.bin``) and, with ``verify``, read it back and
    check it bit for bit (:func:`verify_beside` checks the same later, e.g. after a rename).

    Not atomic by itself, like :func:`artifacts.copy_adapter_with`: call it on a folder being built
    in a temporary place (``io.atomic_dir``), as rule ``prune`` and ``adapter-prune`` do. (A file cut
    short anyway is refused by :func:`load`, never read as other tensors.)

    Returns ``{"dense_bytes", "compact_bytes", "compact_sha256"}`` (sizes of the two weight files).
    """
    folder = Path(adapter_dir)
    dense = weight_file(folder)
    tensors, metadata = read_weight_file(dense)
    data = to_bytes(tensors, metadata=metadata, weights_file=dense.name)
    (folder / COMPACT_FILE).write_bytes(data)
    if verify and not _bit_equal(load(folder / COMPACT_FILE), tensors):
        raise RuntimeError(f"{folder / COMPACT_FILE}: does not decode to the tensors of {dense}")
    return {
        "dense_bytes": dense.stat().st_size,
        "compact_bytes": len(data),
        "compact_sha256": hashlib.sha256(data).hexdigest(),
    }


def verify_beside(adapter_dir, expected: Mapping | None = None) -> None:
    """Check the compact file of a folder that holds both weight files: it decodes (digests) to
    exactly the dense file's tensors, and, with ``expected`` (e.g. ``prune.json``), the sizes and
    ``compact_sha256`` are those recorded. Raises :class:`~adapter_pruning.io.CorruptFileError`."""
    folder = Path(adapter_dir)
    dense, compact = weight_file(folder), folder / COMPACT_FILE
    if not compact.is_file():
        raise CorruptFileError(f"{compact}: missing (written by an older version?); rerun the rule that wrote {folder}")
    if expected is not None:
        if "compact_sha256" not in expected:
            raise CorruptFileError(f"{folder}: its record has no compact_sha256 (an older version wrote it); rerun it")
        got = {
            "dense_bytes": dense.stat().st_size,
            "compact_bytes": compact.stat().st_size,
            "compact_sha256": sha256_file(compact),
        }
        for key, value in got.items():
            if expected.get(key) != value:
                raise CorruptFileError(f"{compact}: {key} is {value}, but the record says {expected.get(key)!r}")
    if not _bit_equal(load(compact), read_weight_file(dense)[0]):
        raise CorruptFileError(f"{compact}: decodes to other tensors than {dense}")


def expand(compact_dir, out_dir) -> Path:
    """Rebuild the dense AdapterHub folder of the compact adapter folder ``compact_dir`` in
    ``out_dir`` (which must not exist; written atomically): every regular file copied except the
    compact file and any dense weight file, and the dense weight file (named as the compact file
    records) written from the verified compact file. Returns ``out_dir``; ``model.load_adapter(out_dir)``
    (with ``use_safetensors=True`` for ``adapter.safetensors``) loads it.

    Raises:
        FileNotFoundError: no compact file in ``compact_dir``. FileExistsError: ``out_dir`` exists.
        CorruptFileError: a truncated or altered compact file.
    """
    src, out = Path(compact_dir), Path(out_dir)
    f = src / COMPACT_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{f}: no compact adapter file")
    if out.exists():
        raise FileExistsError(f"{out}: exists; expand writes a new folder")
    tensors, header = read(f)
    with atomic_dir(out) as tmp:
        for p in sorted(src.iterdir()):
            if p.is_file() and not p.name.startswith(".") and p.name not in (COMPACT_FILE, *_WEIGHT_FILES):
                shutil.copyfile(p, tmp / p.name)
        dest = Path(tmp) / header["weights_file"]
        if dest.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, str(dest), metadata=header["metadata"])
        else:
            import torch

            torch.save(tensors, str(dest))
    return out


def load_adapter(model, compact_dir, **kwargs) -> str:
    """``model.load_adapter`` (``adapters``) of a compact adapter folder: :func:`expand` into a
    temporary folder, load from there (``use_safetensors`` set to match the rebuilt file unless given;
    ``kwargs`` go to ``load_adapter``, e.g. ``with_head=True``), remove it. Returns the adapter's name."""
    with tempfile.TemporaryDirectory(prefix="compact-adapter-") as tmp:
        folder = expand(compact_dir, Path(tmp) / "adapter")
        kwargs.setdefault("use_safetensors", (folder / "adapter.safetensors").is_file())
        return model.load_adapter(str(folder), **kwargs)
