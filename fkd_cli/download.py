"""`fkd download-data` as a library: resumable download, verification, safe all-or-nothing extraction."""

from __future__ import annotations

import datetime as dt
import errno
import http.client
import json
import os
import shutil
import socket
import stat
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from .data import SPLIT_FILES, read_csv
from .digest import sha256_of
from .images import decode_image
from .errors import FkdError

DEFAULT_URL = "https://s3.amazonaws.com/video.udacity-data.com/topher/2018/May/5aea1b91_train-test-data/train-test-data.zip"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "fkd-data"
PARTIAL_DIR = ".partial"
CHUNK = 1 << 16
MAX_RATIO = 100  # total uncompressed size over archive size beyond which we call it a zip bomb
MAX_TOTAL = 8 << 30  # and an absolute cap on what we extract

Progress = Callable[..., None]


@dataclass
class FetchResult:
    dest: Path
    manifest: dict
    already_complete: bool
    bytes_downloaded: int = 0


# ---- errors -----------------------------------------------------------------------------------


def _os_error(exc: OSError, what: Path) -> FkdError:
    if exc.errno == errno.ENOSPC:
        return FkdError(f"disk full while writing {what}; free some space and run again (the download resumes)")
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return FkdError(f"{what}: not writable ({exc.strerror}); choose another --dest")
    return FkdError(f"{what}: {exc.strerror or exc}")


def _network_error(exc: Exception, url: str) -> FkdError:
    hint = "check the network, or use --from with a local copy of the archive"
    if isinstance(exc, urllib.error.HTTPError):
        return FkdError(f"{url}: HTTP {exc.code} {exc.reason}; check --url, or use --from with a local copy")
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return FkdError(f"{url}: cannot resolve the host (no network or DNS failure); {hint}")
    if isinstance(reason, ConnectionRefusedError):
        return FkdError(f"{url}: connection refused; {hint}")
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return FkdError(f"{url}: timed out; run again to resume, or {hint}")
    return FkdError(f"{url}: download failed ({reason}); run again to resume, or {hint}")


# ---- download ---------------------------------------------------------------------------------


def download(url: str, target: Path, progress: Progress | None = None, retries: int = 3, timeout: float = 30.0,
             backoff: float = 0.5) -> int:
    """Stream `url` into `target`, resuming a partial file with an HTTP Range request; returns bytes fetched.

    A dropped connection is retried (each retry resumes); a server that ignores Range restarts from 0.
    """
    fetched = 0
    attempt = 0
    while True:
        have = target.stat().st_size if target.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "fkd", **({"Range": f"bytes={have}-"} if have else {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status = response.status
                length = response.headers.get("Content-Length")
                if have and status == 206:
                    mode, done = "ab", have
                    total = have + int(length) if length else None
                else:  # 200: a fresh copy (the server ignored Range, or there was nothing to resume)
                    mode, done = "wb", 0
                    total = int(length) if length else None
                try:
                    with open(target, mode) as out:
                        while True:
                            chunk = response.read(CHUNK)
                            if not chunk:
                                break
                            out.write(chunk)
                            done += len(chunk)
                            fetched += len(chunk)
                            if progress:
                                progress(done, total, "downloading")
                except OSError as exc:
                    if isinstance(exc, (ConnectionError, socket.timeout, TimeoutError)):
                        raise
                    raise _os_error(exc, target) from None
                if total is not None and done < total:
                    raise http.client.IncompleteRead(b"", total - done)
                return fetched
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing left to send: the partial file is already whole
                return fetched
            raise _network_error(exc, url) from None
        except (urllib.error.URLError, ConnectionError, http.client.HTTPException, socket.timeout, TimeoutError) as exc:
            reason = getattr(exc, "reason", None)
            permanent = isinstance(reason, (socket.gaierror, ConnectionRefusedError))
            if permanent or attempt >= retries:
                raise _network_error(exc, url) from None
            attempt += 1
            if progress:
                progress(target.stat().st_size if target.exists() else 0, None, f"retry {attempt}/{retries}")
            time.sleep(backoff * 2 ** (attempt - 1))


# ---- extraction -------------------------------------------------------------------------------


def _safe_member_path(info: zipfile.ZipInfo, archive: Path) -> PurePosixPath | None:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in path.parts:
        raise FkdError(f"{archive}: refused: entry '{info.filename}' would be written outside the destination")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise FkdError(f"{archive}: refused: entry '{info.filename}' is a symbolic link")
    if path.parts and path.parts[0] == "__MACOSX":
        return None
    return path


def safe_extract(archive: Path, into: Path) -> None:
    """Extract a zip, refusing path traversal, symlinks and zip bombs; writes only under `into`."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FkdError(f"{archive}: not a valid zip archive (corrupt or truncated: {exc}); run again with --force") from None
    with zf:
        members = zf.infolist()
        declared = sum(i.file_size for i in members)
        if declared > MAX_TOTAL or declared > MAX_RATIO * max(1, archive.stat().st_size):
            raise FkdError(f"{archive}: refused: it would unpack to {declared:,} bytes from {archive.stat().st_size:,} (zip bomb?)")
        root = into.resolve()
        for info in members:
            rel = _safe_member_path(info, archive)
            if rel is None or not rel.parts:
                continue
            target = (root / Path(*rel.parts)).resolve()
            if root != target and root not in target.parents:
                raise FkdError(f"{archive}: refused: entry '{info.filename}' would be written outside the destination")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    while True:
                        block = src.read(CHUNK)
                        if not block:
                            break
                        written += len(block)
                        if written > info.file_size:  # lies about its size: stop before it fills the disk
                            raise FkdError(f"{archive}: refused: entry '{info.filename}' is larger than it declares (zip bomb?)")
                        dst.write(block)
            except (zipfile.BadZipFile, EOFError, zlib_error()) as exc:
                raise FkdError(f"{archive}: corrupt entry '{info.filename}' ({exc}); run again with --force") from None
            except OSError as exc:
                raise _os_error(exc, target) from None


def zlib_error():
    import zlib

    return zlib.error


# ---- verification ----------------------------------------------------------------------------


def find_layout_root(folder: Path) -> Path:
    """The folder holding the CSVs: `folder` itself, or its single sub-folder (archives often wrap one)."""
    if (folder / SPLIT_FILES["training"]).exists():
        return folder
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))]
    if len(subdirs) == 1 and (subdirs[0] / SPLIT_FILES["training"]).exists():
        return subdirs[0]
    return folder


def verify_layout(folder: Path, decode: bool = True, numbers_per_row: int = 136) -> dict:
    """Both CSVs parse (file name + 136 numbers a row), every image they name exists (and decodes)."""
    counts = {}
    for split, csv_name in SPLIT_FILES.items():
        csv_path = folder / csv_name
        if not csv_path.is_file():
            raise FkdError(f"{folder}: missing {csv_name}; not the facial keypoints archive")
        names, points = read_csv(csv_path)
        if points.shape[1] * 2 != numbers_per_row:
            raise FkdError(f"{csv_path}: {points.shape[1] * 2} numbers per row, expected {numbers_per_row}")
        image_dir = folder / split
        if not image_dir.is_dir():
            raise FkdError(f"{folder}: missing the {split}/ image folder")
        for name in names:
            path = image_dir / name
            if not path.is_file():
                raise FkdError(f"{folder}: {split}/{name} is named in {csv_name} but missing")
            if decode:
                try:
                    decode_image(path)
                except Exception as exc:  # any decoder failure means a damaged file
                    raise FkdError(f"{folder}: {split}/{name} does not decode ({exc.__class__.__name__})") from None
        counts[split] = {"images": sum(1 for p in image_dir.iterdir() if p.is_file()), "rows": len(names)}
    return counts


def _complete(dest: Path) -> dict | None:
    manifest_path = dest / MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        counts = verify_layout(dest, decode=False)
    except (FkdError, ValueError, OSError):
        return None
    return manifest if counts == manifest.get("splits") else None


# ---- the whole job ----------------------------------------------------------------------------


def is_fkd_data_folder(folder: Path) -> bool:
    """True for a folder that `fkd download-data` wrote: its manifest.json says so."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    # manifests before the "format" key carried exactly these keys
    return manifest.get("format") == MANIFEST_FORMAT or {"source", "sha256", "date", "splits"} <= manifest.keys()


def _holds_cwd(folder: Path) -> bool:
    cwd = Path.cwd().resolve()
    return folder.resolve() in (cwd, *cwd.parents)


def check_dest(dest: Path) -> Path:
    """DEST may be replaced only when it is missing, empty (or holds only our partial download), or a
    previous fkd data folder. Anything else is the user's and is never touched, --force or not."""
    dest = Path(os.path.abspath(dest))
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise FkdError(f"--dest {dest}: exists and is not a folder; choose a new or empty folder")
    if not dest.exists():
        return dest
    try:
        entries = {p.name for p in dest.iterdir()}
    except OSError as exc:
        raise _os_error(exc, dest) from None
    if entries - {PARTIAL_DIR} and not is_fkd_data_folder(dest):
        raise FkdError(f"--dest {dest}: folder holds files that fkd did not write (no fkd manifest.json); "
                       f"nothing was touched: choose a new or empty folder")
    if _holds_cwd(dest) and entries - {PARTIAL_DIR}:
        raise FkdError(f"--dest {dest}: is (or holds) the current folder; run from another folder to replace it")
    return dest


def _install(staging: Path, dest: Path) -> None:
    """Swap the verified staging folder in: DEST is the old complete copy or the new one, never a mix.

    `check_dest` has made sure DEST is ours to replace. An empty DEST that is (or holds) the current
    folder is filled in place instead of being renamed away under the user's shell.
    """
    if dest.is_dir() and _holds_cwd(dest):
        for entry in staging.iterdir():
            os.replace(entry, dest / entry.name)
        shutil.rmtree(dest / PARTIAL_DIR, ignore_errors=True)
        return
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    os.replace(staging, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fetch_dataset(dest: Path, url: str = DEFAULT_URL, sha256: str | None = None, source: Path | None = None,
                  force: bool = False, progress: Progress | None = None, retries: int = 3) -> FetchResult:
    dest = check_dest(dest)
    if not force:
        manifest = _complete(dest)
        if manifest is not None:
            return FetchResult(dest, manifest, already_complete=True)
    if sha256 is not None:
        sha256 = sha256.lower().strip()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise FkdError("--sha256: expected 64 hexadecimal digits")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=dest.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would make the data private by accident
    except OSError as exc:
        raise _os_error(exc, dest.parent) from None
    fetched = 0
    try:
        archive, source_name = None, url
        if source is not None:
            source_name = str(source)
            if source.is_dir():
                shutil.copytree(find_layout_root(source), staging, dirs_exist_ok=True)
            elif source.is_file():
                archive = source
            else:
                raise FkdError(f"--from {source}: no such file or folder")
        elif url.startswith("file://"):
            archive = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
            if not archive.is_file():
                raise FkdError(f"{url}: no such file")
        else:
            partial_dir = dest / PARTIAL_DIR
            try:
                partial_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _os_error(exc, partial_dir) from None
            archive = partial_dir / (Path(urllib.parse.urlparse(url).path).name or "archive.zip")
            if force and archive.exists():
                archive.unlink()
            fetched = download(url, archive, progress, retries=retries)
        digest, size = None, None
        if archive is not None:
            size = archive.stat().st_size
            if progress:
                progress(size, size, "verifying")
            digest = sha256_of(archive)
            if sha256 is not None and digest != sha256:
                if source is None and not url.startswith("file://"):
                    archive.unlink()  # a bad download must not be resumed from
                raise FkdError(f"{source_name}: SHA-256 mismatch (got {digest}, expected {sha256}); the bad file was removed"
                               if source is None and not url.startswith("file://") else
                               f"{source_name}: SHA-256 mismatch (got {digest}, expected {sha256})")
            if progress:
                progress(size, size, "extracting")
            safe_extract(archive, staging)
        root = find_layout_root(staging)
        if progress:
            progress(1, 1, "checking every image")
        counts = verify_layout(root)
        if root != staging:  # lift the wrapped folder's content to the top of staging
            inner = staging.with_name(staging.name + "-inner")
            os.replace(root, inner)
            shutil.rmtree(staging)
            os.replace(inner, staging)
        manifest = {
            "format": MANIFEST_FORMAT, "source": source_name, "size": size, "sha256": digest,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "splits": counts,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        _install(staging, dest)
    except OSError as exc:
        raise _os_error(exc, dest) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return FetchResult(dest, manifest, already_complete=False, bytes_downloaded=fetched)
