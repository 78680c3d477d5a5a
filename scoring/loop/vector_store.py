"""Pair vectors in append-only part files per encoder, under a local directory or any fsspec URL.

Layout under the storage root (``settings.ARBITER["VECTOR_ROOT"]``: a local directory under
the var dir by default, or any fsspec URL such as ``s3://bucket/arbiter-vectors`` or a shared
volume)::

    enc-<sha256(encoder key)[:16]>/
        encoder.json          the encoder key and the codecs of the blocks
        part-<ns>-<rand>-c<campaign>.npz
                              one chunk of one campaign's pairs: ``ids`` (int64) and each
                              block, encoded (``part-<ns>-<rand>.npz``: written before parts
                              named their campaign, or by a writer that did not know it)
        index-*.faiss          the retrieval index (``scoring.loop.vector_index``)

One encoder serves many campaigns (pair ids are global); the campaign in a part's name lets a
campaign's index read its own parts and the untagged ones, not every other campaign's, and a
deleted campaign's parts and index be removed without touching the others'
(``campaign_vector_files_remove``, run by ``scoring.campaign_files``).

A part is written to a temporary name and renamed once complete, so a killed writer leaves no
file that readers list (only a ``.tmp-<ns>-*`` leftover, removed once an hour old by the
next index save). Parts are never modified; a pair
embedded twice (two writers racing) has identical vectors in both, and readers take either.
No database table tracks the vectors: "which pairs have vectors for this encoder" is answered
from the parts' id arrays (``VectorCatalogue``: 24 bytes a pair in memory, numpy arrays: each
part's int64 ids, and the sorted int64 ids with int32 part and row; read once per process and
extended as parts appear).

Codecs (per block): ``f16`` (float16), ``i8`` (int8 with a float32 scale per row, i.e.
``x ≈ code * scale`` with ``scale = max|x| / 127``), ``i12`` (the same with 12-bit codes, two
packed in three bytes) or ``f32``. The head features of A and B have one more, the default
``mid-diff``: their midpoint ``(a + b) / 2`` in ``i8`` and their difference ``a - b`` in
``i12``. A linear reward head's p(A better) is ``sigmoid(w · (a - b))``, so it depends only on
the difference, which keeps 12 bits; the midpoint only shifts both rewards together. By
default context vectors (retrieval) are ``i8`` (``VECTOR_CONTEXT_CODEC``: recall@8 unchanged
against float32 on MiniLM vectors) and the features ``mid-diff`` (``VECTOR_FEATURE_CODEC``: p
moves by at most 0.0004, where ``f16`` features move it by 0.0006 and ``i8`` by 0.037, at
1,364 bytes a pair instead of 1,932 for ``f16``); the README gives the measurements.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

BLOCKS = ("context", "a", "b")
CODECS = ("f16", "i8", "i12", "f32")
# A codec for the features of A and B together (stored as their midpoint and difference).
JOINT_FEATURE_CODEC = "mid-diff"
FEATURE_CODECS = (*CODECS, JOINT_FEATURE_CODEC)
_I12_MAX = 2047
_PART_PREFIX = "part-"
_TMP_PREFIX = ".tmp-"
_PART_SUFFIX = ".npz"
# Rows closer than this many bytes apart are read in one request (a gap costs less than a seek,
# above all on object storage).
_READ_GAP_BYTES = 64 * 1024
_ZIP_LOCAL_HEADER = 30  # bytes before a member's name in its zip local header


def vector_root() -> str:
    return str(settings.ARBITER.get("VECTOR_ROOT") or os.path.join(settings.VAR_DIR, "vectors"))


def feature_codec() -> str:
    return str(settings.ARBITER.get("VECTOR_FEATURE_CODEC", JOINT_FEATURE_CODEC))


def context_codec() -> str:
    return str(settings.ARBITER.get("VECTOR_CONTEXT_CODEC", "i8"))


def configured_codecs() -> dict[str, str]:
    return {"context": context_codec(), "a": feature_codec(), "b": feature_codec()}


def _fs_and_path(url: str) -> tuple[Any, str]:
    import fsspec  # type: ignore[import-untyped]

    fs, path = fsspec.core.url_to_fs(url)
    return fs, path.rstrip("/")


def encoder_dir_name(key: str) -> str:
    return "enc-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def part_name_campaign(name: str) -> int | None:
    """The campaign a part's name records, or None (an untagged part: any campaign's pairs)."""
    segments = name.removeprefix(_PART_PREFIX).removesuffix(_PART_SUFFIX).split("-")
    # Untagged names have two segments (``<ns>-<rand>``): a random part may itself read "c12…".
    if len(segments) == 3 and segments[2][:1] == "c" and segments[2][1:].isdigit():
        return int(segments[2][1:])
    return None


def part_holds_campaign(name: str, campaign_id: int) -> bool:
    """Whether this part may hold pairs of the campaign: its own parts and the untagged ones."""
    tagged = part_name_campaign(name)
    return tagged is None or tagged == campaign_id


def _row_scale(values: np.ndarray, levels: int) -> np.ndarray:
    scale = np.abs(values).max(axis=1) / levels if values.size else np.zeros(len(values))
    return np.maximum(scale, np.float32(1e-30)).astype(np.float32)


def _pack_12(codes: np.ndarray) -> np.ndarray:
    """Unsigned 12-bit codes (rows of even width) packed two into three bytes."""
    low, high = codes[:, 0::2].astype(np.uint16), codes[:, 1::2].astype(np.uint16)
    packed = np.empty((len(codes), low.shape[1], 3), dtype=np.uint8)
    packed[:, :, 0] = low & 0xFF
    packed[:, :, 1] = (low >> 8) | ((high & 0x0F) << 4)
    packed[:, :, 2] = high >> 4
    return packed.reshape(len(codes), -1)


def _unpack_12(packed: np.ndarray) -> np.ndarray:
    triples = packed.reshape(len(packed), -1, 3).astype(np.uint16)
    codes = np.empty((len(packed), triples.shape[1] * 2), dtype=np.uint16)
    codes[:, 0::2] = triples[:, :, 0] | ((triples[:, :, 1] & 0x0F) << 8)
    codes[:, 1::2] = (triples[:, :, 1] >> 4) | (triples[:, :, 2] << 4)
    return codes


def encode_block(values: np.ndarray, codec: str) -> dict[str, np.ndarray]:
    values = np.asarray(values, dtype=np.float32)
    if codec == "i12":
        scale = _row_scale(values, _I12_MAX)
        codes = np.clip(np.rint(values / scale[:, None]), -_I12_MAX, _I12_MAX) + _I12_MAX + 1
        width = values.shape[1] if values.ndim == 2 else 0
        if width % 2:
            codes = np.pad(codes, ((0, 0), (0, 1)), constant_values=_I12_MAX + 1)
        return {
            "": _pack_12(codes.astype(np.uint16)),
            "_scale": scale,
            "_width": np.array(width, dtype=np.int32),
        }
    if codec == "f16":
        return {"": values.astype(np.float16)}
    if codec == "f32":
        return {"": values}
    if codec == "i8":
        scale = _row_scale(values, 127)
        codes = np.clip(np.rint(values / scale[:, None]), -127, 127).astype(np.int8)
        return {"": codes, "_scale": scale}
    raise ValueError(f"unknown vector codec {codec!r}")


def decode_block(arrays: dict[str, np.ndarray], codec: str) -> np.ndarray:
    if codec == "i12":
        width = int(arrays["_width"])
        codes = _unpack_12(arrays[""])[:, :width].astype(np.float32) - (_I12_MAX + 1)
        decoded: np.ndarray = codes * arrays["_scale"][:, None]
        return decoded
    if codec == "i8":
        return arrays[""].astype(np.float32) * arrays["_scale"][:, None]
    return arrays[""].astype(np.float32)


@dataclass
class _Part:
    name: str
    ids: np.ndarray


@dataclass
class _Run:
    """Ids sorted (stably: a pair stored twice keeps its earlier part first), with each one's
    part and row."""

    ids: np.ndarray
    part_of: np.ndarray
    row_of: np.ndarray

    @classmethod
    def merged(cls, runs: Sequence[_Run]) -> _Run:
        """One run of these, older first: a pair in several keeps its oldest copy first."""
        ids = np.concatenate([run.ids for run in runs])
        order = np.argsort(ids, kind="stable")
        return cls(
            ids[order],
            np.concatenate([run.part_of for run in runs])[order],
            np.concatenate([run.row_of for run in runs])[order],
        )


@dataclass
class VectorCatalogue:
    """Where each pair's vectors are: the parts, and their ids in sorted runs with each id's
    part and row (numpy only).

    New parts come as a run of their own, merged with the runs before it while those are no
    more than twice its size (as a binary counter carries): a few dozen runs at most, and
    each id is re-sorted about log2(total / part) times in all. Re-sorting every id at each
    refresh took 1.4 s at 20M ids, once per chunk of every scoring shard."""

    parts: list[_Part] = field(default_factory=list)
    runs: list[_Run] = field(default_factory=list)

    def extend(self, new_parts: Sequence[_Part]) -> None:
        if not new_parts:
            return
        first = len(self.parts)
        self.parts.extend(new_parts)
        run = _Run.merged(
            [
                _Run(
                    part.ids,
                    np.full(len(part.ids), first + offset, dtype=np.int32),
                    np.arange(len(part.ids), dtype=np.int32),
                )
                for offset, part in enumerate(new_parts)
            ]
        )
        if not len(run.ids):
            return  # parts of no pair: nothing to find in them
        while self.runs and len(self.runs[-1].ids) <= 2 * len(run.ids):
            run = _Run.merged([self.runs.pop(), run])
        self.runs.append(run)

    def locate(self, pair_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(found mask, part, row) of each id: its oldest copy's, where it is stored twice."""
        pair_ids = np.asarray(pair_ids, dtype=np.int64)
        found = np.zeros(len(pair_ids), dtype=bool)
        part_of = np.zeros(len(pair_ids), dtype=np.int32)
        row_of = np.zeros(len(pair_ids), dtype=np.int32)
        for run in self.runs:  # oldest first
            wanted = np.nonzero(~found)[0]
            if not len(wanted) or not len(run.ids):
                continue
            position = np.minimum(np.searchsorted(run.ids, pair_ids[wanted]), len(run.ids) - 1)
            here = run.ids[position] == pair_ids[wanted]
            hit, at = wanted[here], position[here]
            found[hit] = True
            part_of[hit] = run.part_of[at]
            row_of[hit] = run.row_of[at]
        return found, part_of, row_of

    def __len__(self) -> int:
        return sum(len(run.ids) for run in self.runs)

    @property
    def distinct(self) -> int:
        if not self.runs:
            return 0
        return int(len(np.unique(np.concatenate([run.ids for run in self.runs]))))


class VectorStore:
    """The part files of one encoder. Thread-safe enough for one process's shards."""

    def __init__(self, key: str, root: str | None = None) -> None:
        self.key = key
        self.root = root or vector_root()
        self.fs, base = _fs_and_path(self.root)
        self.path = f"{base}/{encoder_dir_name(key)}"
        self.codecs = configured_codecs()
        self.catalogue = VectorCatalogue()
        self._lock = threading.Lock()
        self._meta_written = False

    # Writing ----------------------------------------------------------------------------
    def _write_meta(self) -> None:
        meta = f"{self.path}/encoder.json"
        if self._meta_written and self.fs.exists(meta):
            return
        self.fs.makedirs(self.path, exist_ok=True)
        if self.fs.exists(meta):
            stored = json.loads(self.fs.cat_file(meta))
            self.codecs = dict(stored.get("codecs", self.codecs))
        else:
            # A new encoder directory takes the codecs configured now; existing ones keep theirs.
            self.codecs = configured_codecs()
            self._atomic_write(meta, json.dumps({"key": self.key, "codecs": self.codecs}).encode())
        self._meta_written = True

    def _temporary_name(self) -> str:
        """A temporary path in this directory, named with the time it was made, so a leftover
        of a killed writer can be told old (``remove_stale_temporaries``)."""
        return f"{self.path}/{_TMP_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex}"

    def _atomic_write(self, path: str, data: bytes) -> None:
        tmp = self._temporary_name()
        with self.fs.open(tmp, "wb") as handle:
            handle.write(data)
        self.fs.mv(tmp, path)

    def append(
        self, *, ids: np.ndarray, blocks: dict[str, np.ndarray], campaign_id: int | None = None
    ) -> str | None:
        """Write one part with these pairs' blocks (context, a, b); returns its name.
        ``campaign_id``: the campaign all these pairs belong to, recorded in the name."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return None
        self._write_meta()
        arrays: dict[str, np.ndarray] = {"ids": ids}
        for name, (values, codec) in self._stored_arrays(blocks).items():
            for suffix, array in encode_block(values, codec).items():
                arrays[name + suffix] = array
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types kwds as bool
        tag = f"-c{int(campaign_id)}" if campaign_id is not None else ""
        name = f"{_PART_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{tag}{_PART_SUFFIX}"
        self._atomic_write(f"{self.path}/{name}", buffer.getvalue())
        return name

    def remove_stale_temporaries(self, *, older_than_ns: int) -> int:
        """Remove the temporary files writers killed mid-write left behind (a part, a meta, or
        an index being copied in: up to gigabytes each, which nothing else ever removed),
        once older than ``older_than_ns``, so a write still under way keeps its file. A name
        records when it was made; one from before names did is dated by the file system
        where it can say. Returns how many were removed."""
        now = time.time_ns()
        removed = 0
        for path in self.fs.glob(f"{self.path}/{_TMP_PREFIX}*"):
            stamp = path.rsplit("/", 1)[-1].removeprefix(_TMP_PREFIX).split("-", 1)[0]
            try:
                made = int(stamp) if len(stamp) == 20 and stamp.isdigit() else None
                if made is None:
                    made = int(self.fs.modified(path).timestamp() * 10**9)
                if now - made > older_than_ns:
                    self.fs.rm(path)
                    removed += 1
            except (FileNotFoundError, NotImplementedError):
                continue  # removed by another sweep, or a file system that cannot date it
        return removed

    # Reading ----------------------------------------------------------------------------
    def part_names(self) -> list[str]:
        self.fs.invalidate_cache(self.path)
        if not self.fs.exists(self.path):
            return []
        names = [entry.rsplit("/", 1)[-1] for entry in self.fs.ls(self.path, detail=False)]
        return sorted(n for n in names if n.startswith(_PART_PREFIX) and n.endswith(_PART_SUFFIX))

    def put_file(self, local_path: str, name: str) -> None:
        """Move a finished local file into this encoder's directory under ``name``
        (a temporary name first, then a rename, as for parts)."""
        tmp = self._temporary_name()
        self.fs.put_file(local_path, tmp)
        self.fs.mv(tmp, f"{self.path}/{name}")

    def local_copy(self, name: str, local_path: str) -> str:
        """A local path holding the file ``name`` (itself on a local file system)."""
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        if "file" in protocols:
            if not self.fs.exists(f"{self.path}/{name}"):  # as ``get_file`` raises for a copy
                raise FileNotFoundError(f"{self.path}/{name}")
            return f"{self.path}/{name}"
        self.fs.get_file(f"{self.path}/{name}", local_path)
        return local_path

    def read_part(self, name: str, blocks: Sequence[str] = ("context",)) -> dict[str, Any]:
        """One part's ids and decoded blocks."""
        data = self._read(name, ["ids", *self._members(blocks)])
        decoded: dict[str, Any] = {"ids": data["ids"].astype(np.int64), "name": name}
        decoded.update(self._decode(data, blocks))
        return decoded

    def _read(self, name: str, members: Sequence[str]) -> dict[str, np.ndarray]:
        with self.fs.open(f"{self.path}/{name}", "rb") as handle, np.load(handle) as data:
            return {member: data[member] for member in members if member in data.files}

    def _read_rows(
        self, name: str, members: Sequence[str], rows: np.ndarray
    ) -> dict[str, np.ndarray]:
        """These rows (in this order) of a part's arrays, reading only the bytes that hold
        them: a part is an uncompressed zip of ``.npy`` members, so row ``r`` of a member sits
        at a fixed offset. 0-d arrays (a block's width) come whole."""
        rows = np.asarray(rows, dtype=np.int64)
        wanted, back = np.unique(rows, return_inverse=True)
        out: dict[str, np.ndarray] = {}
        with self.fs.open(f"{self.path}/{name}", "rb") as handle:
            directory = zipfile.ZipFile(handle)
            present = set(directory.namelist())
            for member in members:
                if member + ".npy" not in present:
                    continue
                info = directory.getinfo(member + ".npy")
                if info.compress_type != zipfile.ZIP_STORED:  # not written by ``append``
                    with directory.open(info) as stored:
                        out[member] = np.lib.format.read_array(stored)[rows]
                    continue
                stored_rows = _stored_rows(handle, info, wanted)
                out[member] = stored_rows[back] if stored_rows.ndim else stored_rows
        return out

    def refresh(self) -> VectorCatalogue:
        """Read the id arrays of parts written since the last look (by any process)."""
        with self._lock:
            if self.fs.exists(f"{self.path}/encoder.json"):
                stored = json.loads(self.fs.cat_file(f"{self.path}/encoder.json"))
                self.codecs = dict(stored.get("codecs", self.codecs))
            names = self.part_names()
            known = {part.name for part in self.catalogue.parts}
            if not known.issubset(names):
                # Parts disappear when a deleted campaign's go, or someone deletes the files
                # (a reset): start over.
                self.catalogue = VectorCatalogue()
                known = set()
            new = []
            for name in names:
                if name in known:
                    continue
                try:
                    ids = self._read(name, ["ids"])["ids"].astype(np.int64)
                except FileNotFoundError:
                    # Listed, then removed: a deleted campaign's part (campaign_files_remove)
                    # on this shared encoder. It held none of the pairs read here.
                    continue
                new.append(_Part(name, ids))
            self.catalogue.extend(new)
            return self.catalogue

    def missing(self, pair_ids: Sequence[int]) -> list[int]:
        catalogue = self.refresh()
        ids = np.asarray(list(pair_ids), dtype=np.int64)
        found, _part, _row = catalogue.locate(ids)
        return [int(pair_id) for pair_id in ids[~found]]

    def _joint(self) -> bool:
        return self.codecs["a"] == JOINT_FEATURE_CODEC

    def _stored_arrays(self, blocks: dict[str, np.ndarray]) -> dict[str, tuple[Any, str]]:
        """What a part stores for these blocks: each block in its codec, or the features of A
        and B as their midpoint (int8) and difference (12-bit) under ``mid-diff``."""
        stored: dict[str, tuple[Any, str]] = {
            "context": (blocks["context"], self.codecs["context"])
        }
        if self._joint():
            a = np.asarray(blocks["a"], dtype=np.float32)
            b = np.asarray(blocks["b"], dtype=np.float32)
            stored["mid"] = ((a + b) / 2, "i8")
            stored["diff"] = (a - b, "i12")
        else:
            stored["a"] = (blocks["a"], self.codecs["a"])
            stored["b"] = (blocks["b"], self.codecs["b"])
        return stored

    def _sources(self, blocks: Sequence[str]) -> dict[str, str]:
        """The stored arrays (name: codec) these blocks are decoded from."""
        sources: dict[str, str] = {}
        for block in blocks:
            if block != "context" and self._joint():
                sources.update(mid="i8", diff="i12")
            else:
                sources[block] = self.codecs[block]
        return sources

    def _members(self, blocks: Sequence[str]) -> list[str]:
        suffixes = {"i8": ("", "_scale"), "i12": ("", "_scale", "_width")}
        return [
            name + suffix
            for name, codec in self._sources(blocks).items()
            for suffix in suffixes.get(codec, ("",))
        ]

    def _decode(self, data: dict[str, np.ndarray], blocks: Sequence[str]) -> dict[str, np.ndarray]:
        """Float32 blocks from a part's arrays."""
        decoded: dict[str, np.ndarray] = {}
        for name, codec in self._sources(blocks).items():
            arrays = {
                suffix: data[name + suffix]
                for suffix in ("", "_scale", "_width")
                if name + suffix in data
            }
            decoded[name] = decode_block(arrays, codec)
        if "mid" in decoded:
            mid, diff = decoded.pop("mid"), decoded.pop("diff")
            decoded["a"], decoded["b"] = mid + diff / 2, mid - diff / 2
        return {block: decoded[block] for block in blocks}

    def load(
        self, pair_ids: Sequence[int] | np.ndarray, blocks: Sequence[str] = BLOCKS
    ) -> dict[str, Any]:
        """Decoded float32 blocks for these pairs, row-aligned; raises LookupError if any is
        missing. Opens each part that holds some of them once and reads only their rows (a
        few candidates of a search cost a few kilobytes, not every part's whole block)."""
        catalogue = self.refresh()
        ids = np.asarray(list(pair_ids), dtype=np.int64)
        found, part_of, row_of = catalogue.locate(ids)
        if not found.all():
            raise LookupError(f"no {self.key!r} vectors for pairs {ids[~found][:10].tolist()}")
        out: dict[str, np.ndarray] = {}
        if not len(ids):
            return {block: np.zeros((0, 0), dtype=np.float32) for block in blocks}
        members = self._members(blocks)
        for part_index in np.unique(part_of):
            rows_here = np.nonzero(part_of == part_index)[0]
            name = catalogue.parts[int(part_index)].name
            decoded = self._decode(self._read_rows(name, members, row_of[rows_here]), blocks)
            for block in blocks:
                if block not in out:
                    out[block] = np.zeros((len(ids), decoded[block].shape[1]), dtype=np.float32)
                out[block][rows_here] = decoded[block]
        return out

    def iter_parts(self, blocks: Sequence[str] = ("context",)) -> Iterator[dict[str, Any]]:
        """Every part in write order: ids and decoded blocks (one part in memory at a time)."""
        for name in self.part_names():
            yield self.read_part(name, blocks)

    def bytes_on_disk(self) -> int:
        if not self.fs.exists(self.path):
            return 0
        return int(
            sum(
                entry["size"]
                for entry in self.fs.ls(self.path, detail=True)
                if entry["name"].rsplit("/", 1)[-1].startswith(_PART_PREFIX)
            )
        )


def _stored_rows(handle: Any, info: zipfile.ZipInfo, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (sorted, unique) of the uncompressed ``.npy`` member ``info``: its offset
    comes from the zip local header, its shape from the ``.npy`` header; nearby rows are read
    together."""
    handle.seek(info.header_offset)
    local = handle.read(_ZIP_LOCAL_HEADER)
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    handle.seek(info.header_offset + _ZIP_LOCAL_HEADER + name_length + extra_length)
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
    else:
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
    start = handle.tell()
    if not shape:
        return np.frombuffer(handle.read(dtype.itemsize), dtype=dtype).reshape(())
    if fortran_order:
        handle.seek(start)
        whole = np.frombuffer(handle.read(dtype.itemsize * int(np.prod(shape))), dtype=dtype)
        return whole.reshape(shape, order="F")[rows]
    row_shape = tuple(shape[1:])
    row_bytes = dtype.itemsize * int(np.prod(row_shape, dtype=np.int64))
    out = np.empty((len(rows), *row_shape), dtype=dtype)
    if not len(rows) or not row_bytes:
        return out
    # Runs of rows whose gaps are small enough to read through.
    breaks = np.nonzero(np.diff(rows) * row_bytes > _READ_GAP_BYTES)[0] + 1
    for run in np.split(np.arange(len(rows)), breaks):
        first, last = int(rows[run[0]]), int(rows[run[-1]])
        handle.seek(start + first * row_bytes)
        span = np.frombuffer(handle.read((last - first + 1) * row_bytes), dtype=dtype)
        out[run] = span.reshape(-1, *row_shape)[rows[run] - first]
    return out


def campaign_vector_files(campaign_id: int, root: str | None = None) -> list[str]:
    """The files of one campaign under the vector root, in every encoder's directory: its
    tagged parts (``part-…-c<id>.npz``) and its index (``index-c<id>.json``,
    ``index-c<id>-….faiss`` and their marks). Untagged parts and other campaigns' files are
    never among them: an encoder's directory serves many campaigns."""
    return [path for path, owner in _vector_files(root) if owner == campaign_id]


def vector_file_campaigns(root: str | None = None) -> set[int]:
    """Every campaign id that names a file under the vector root (a part's tag or an index)."""
    return {owner for _path, owner in _vector_files(root) if owner is not None}


def _vector_files(root: str | None) -> Iterator[tuple[str, int | None]]:
    """(path, the campaign its name tags or None) of every file in every encoder's directory."""
    fs, base = _fs_and_path(root or vector_root())
    fs.invalidate_cache(base)
    for directory in fs.glob(f"{base}/enc-*"):
        for entry in fs.ls(directory, detail=False):
            name = entry.rsplit("/", 1)[-1]
            yield f"{directory}/{name}", _file_campaign(name)


def _file_campaign(name: str) -> int | None:
    if name.startswith(_PART_PREFIX) and name.endswith(_PART_SUFFIX):
        return part_name_campaign(name)
    if not name.startswith("index-c"):
        return None
    rest = name.removeprefix("index-c")  # "<id>.json" or "<id>-…"
    digits = rest.removesuffix(".json") if "-" not in rest else rest.split("-", 1)[0]
    return int(digits) if digits.isascii() and digits.isdigit() else None


def campaign_vector_files_remove(campaign_id: int, root: str | None = None) -> int:
    """Remove one campaign's vector files (``campaign_vector_files``); how many went. A file
    already gone (a second run, a racing one) is no error. The index meta goes first, so a
    reader never finds a meta naming a removed index file."""
    fs, _base = _fs_and_path(root or vector_root())
    paths = sorted(campaign_vector_files(campaign_id, root), key=lambda p: not p.endswith(".json"))
    removed = 0
    for path in paths:
        try:
            fs.rm(path)
        except FileNotFoundError:
            continue
        removed += 1
    return removed


_STORES: dict[tuple[str, str], VectorStore] = {}
_STORES_LOCK = threading.Lock()


def vector_store(key: str) -> VectorStore:
    """This process's store for an encoder (its catalogue is kept between calls)."""
    root = vector_root()
    with _STORES_LOCK:
        store = _STORES.get((root, key))
        if store is None:
            store = _STORES[(root, key)] = VectorStore(key, root)
        return store
