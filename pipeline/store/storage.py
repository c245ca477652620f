"""What the feature store needs of Zarr's storage layer beyond Zarr's public API: a folder's listing
with sizes in one request, and removing a folder.

The third-party internals the store relies on are used here and only here: ``zarr.core.sync.sync``
(present in zarr 3.1 to 3.4), which runs a Zarr store's coroutines from synchronous code, and an
fsspec file system's ``_ls`` (the async listing, whose entries carry sizes).
"""

from __future__ import annotations

import os
from pathlib import Path

import zarr


def store_listing(store, path: str) -> dict[str, int | None] | None:
    """Names directly under `path` in a Zarr store, with their sizes in bytes where the store gives
    them in the same request (local folders, fsspec file systems); None when `path` is not there."""
    if isinstance(store, zarr.storage.LocalStore):
        folder = Path(store.root) / path
        try:
            with os.scandir(folder) as entries:
                return {e.name: (e.stat().st_size if e.is_file() else None) for e in entries}
        except (FileNotFoundError, NotADirectoryError):
            return None
    from zarr.core.sync import sync  # noqa: PLC0415 (an internal of zarr 3, present in 3.1 to 3.4)

    fs = getattr(store, "fs", None)
    if fs is not None and hasattr(fs, "_ls"):
        full = f"{store.path.rstrip('/')}/{path}".rstrip("/")
        try:
            try:  # never a cached listing (s3fs, gcsfs keep one): chunks may have come or gone since
                entries = sync(fs._ls(full, detail=True, refresh=True))
            except TypeError:
                entries = sync(fs._ls(full, detail=True))
        except FileNotFoundError:
            return None
        except Exception:  # a file system whose listing has no sizes: the names below still work
            entries = None
        if entries is not None:
            return {str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: (e.get("size") if e.get("type") == "file"
                                                                     else None) for e in entries}

    async def names():
        return [name async for name in store.list_dir(path)]

    found = sync(names())
    return {name: None for name in found} if found else None


def delete_folder(store, path: str) -> None:
    """Remove everything under `path` in a Zarr store."""
    from zarr.core.sync import sync  # noqa: PLC0415 (see store_listing)

    sync(store.delete_dir(path))


def delete_key(store, key: str) -> None:
    """Remove one key (a file) of a Zarr store; nothing happens when it is not there."""
    from zarr.core.sync import sync  # noqa: PLC0415 (see store_listing)

    sync(store.delete(key))
