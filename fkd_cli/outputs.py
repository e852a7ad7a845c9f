"""Writing results safely: every output is checked before the work starts, run folders are claimed
atomically, and files are written through a temporary file so that a kill never leaves half a file."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from .errors import FkdError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_error(exc: OSError, what: Path) -> FkdError:
    """The one-line error for a file that could not be written (disk full, permissions, its folder gone)."""
    if exc.errno == errno.ENOSPC:
        return FkdError(f"{what}: disk full ({exc.strerror}); free some space and run again")
    return FkdError(f"{what}: not writable ({exc.strerror or exc})")


def is_stream(path: Path) -> bool:
    """A device, pipe or socket (`/dev/null`, `/dev/stdout`, a shell's `>(jq .)`): written to as it is,
    never replaced by a file (a rename over /dev/null by root would turn the device into a file)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, then rename: a kill never leaves half a file.

    A stream is written directly; a symbolic link is followed (its target is written, the link kept)."""
    path = Path(path)
    if is_stream(path):
        write(str(path))
        return
    if path.is_symlink():
        path = path.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make results private by accident
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _probe(folder: Path, label: str) -> None:
    """Create and remove a file in `folder`: the only honest test that we can write there."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".fkd-probe-", dir=folder)
    except OSError as exc:
        raise FkdError(f"{label}: folder {folder} is not writable ({exc.strerror or exc}); choose another place") from None
    os.close(fd)
    os.unlink(tmp)


def check_output_file(path: Path, option: str) -> Path:
    """Fail now, before any work, if `path` (given with `option`) cannot be written later."""
    path = Path(path)
    if path.is_dir():
        raise FkdError(f"{option} {path}: is a folder; give a file name")
    if is_stream(path):
        if not os.access(path, os.W_OK):
            raise FkdError(f"{option} {path}: not writable")
        return path
    if path.is_symlink():
        path = path.resolve()
    if not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise FkdError(f"{option} {path}: folder {path.parent} {what}")
    _probe(path.parent, f"{option} {path}")
    return path


def check_output_folder(folder: Path, option: str) -> Path:
    """An existing folder we can write into, or the nearest existing parent of a new one."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FkdError(f"{option} {folder}: exists and is not a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise FkdError(f"{option} {folder}: {existing} is not a folder")
    _probe(existing, f"{option} {folder}")
    return folder


def claim_run_dir(base: Path, option: str = "--out") -> Path:
    """Create `base`, or `base2`, `base3`...: the first that did not exist. Creating is the claim, so
    two runs started at once never get the same folder, and an earlier run is never overwritten."""
    base = Path(base)
    check_output_folder(base.parent, option)
    n = 1
    while True:
        candidate = base if n == 1 else base.parent / f"{base.name}{n}"
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            n += 1
        except OSError as exc:
            raise write_error(exc, candidate) from None


def release_if_empty(folder: Path) -> None:
    """Remove a claimed folder that nothing was written into (a run that failed before its first file)."""
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty, or already gone: leave it
