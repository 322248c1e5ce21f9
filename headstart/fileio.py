"""Atomic file and folder writes, and hashing.

Everything headstart writes (cache entries, run folders, demo data) is written to a
temporary name beside its destination and renamed into place, so a reader sees either
the old complete thing or the new complete thing, never half of one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_TMP_MARK = ".tmp-"


def check_writable(path: str | os.PathLike, flag: str = "--out", folder: bool = True) -> None:
    """Before any work: something can be written at `path` (a folder to create or fill, or with
    folder=False a file). A file is created and removed in the nearest folder that exists; a file in
    the way, a read-only folder or a full disk is one line naming `flag` and the path."""
    from .errors import HeadstartError

    path = Path(path).expanduser()
    where = path if folder and path.is_dir() else path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise HeadstartError(f"{flag} '{path}': '{where}' is a file, so nothing can be written under it; "
                             "choose another path")
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".headstart-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise HeadstartError(f"{flag} '{path}' cannot be written ({e.strerror or type(e).__name__} in '{where}'); "
                             "choose a folder you can write to") from None


def path_kind(path: str | os.PathLike) -> str | None:
    """"dir", "file" or None for a name that is neither, or that cannot be a path at all: a command-line item
    may be a text to predict, longer than a file name may be (pathlib's is_dir raises OSError for it)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ENAMETOOLONG, ENOENT, ENOTDIR, a NUL byte...
        return None
    return "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(path: Path, directory: bool = False) -> None:
    """Give a temporary file or folder (created private by tempfile) the permissions a plain
    open() or mkdir() would have had."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


NO_ROOM = (errno.ENOSPC, errno.EDQUOT)  # a full disk, a full quota
NO_ENTRY = (errno.EACCES, errno.EPERM, errno.EROFS)  # a folder (or disk) that does not let this user write


@contextmanager
def disk_room(path: str | os.PathLike, need_bytes: int | None = None) -> Iterator[None]:
    """Writes to `path` inside the block: a disk (or quota) that fills up, or a folder that stopped letting this
    user write while the work ran, is one line naming the path (and about how much it needs), not a traceback.
    What was half-written is the block's to remove (atomic writes do)."""
    from .errors import CannotWrite

    try:
        yield
    except OSError as e:
        if e.errno in NO_ENTRY:
            raise CannotWrite(f"cannot write {path} ({e.strerror}): check the permissions of its folder, or write "
                              "elsewhere", e.errno) from None
        if e.errno not in NO_ROOM:
            raise
        need_kb = (need_bytes or 0) / 2**10
        size = f"{need_kb / 2**10:.0f} MB" if need_kb >= 2**10 else f"{need_kb:.0f} KB"
        need = f"; it needs about {size} free" if need_bytes else ""
        raise CannotWrite(f"no space left to write {path} ({e.strerror}){need}: free some space, or write "
                          "elsewhere", e.errno) from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with disk_room(path, len(data)):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{_TMP_MARK}")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            default_mode(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


_HELD: set[Path] = set()  # the locks this process holds


def _lock_file(path: Path) -> Path:
    """Where the lock of `path` lives: the system's temporary folder, named by the absolute path (nothing is
    added beside the user's folders)."""
    key = hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:32]
    return Path(tempfile.gettempdir()) / "headstart-locks" / f"{key}.lock"


def hold_lock(path: str | os.PathLike, flag: str = "--out") -> None:
    """This process alone writes `path` until it lets go (release_lock) or exits: a lock file holding its pid,
    taken before any work. Another live process holding it is one line; a lock left by a dead one is taken
    over. Taking it again in the same process is fine."""
    import atexit

    from .errors import HeadstartError

    path = Path(path).expanduser()
    lock = _lock_file(path)
    if lock in _HELD:
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pid = 0
            if pid and pid != os.getpid() and _pid_alive(pid):
                raise HeadstartError(f"{flag} '{path}' is being written by another headstart process (pid {pid}); "
                                     "wait for it to finish, or choose another folder") from None
            lock.unlink(missing_ok=True)  # left by a process that died
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {os.path.abspath(path)}\n")
        _HELD.add(lock)
        atexit.register(lock.unlink, missing_ok=True)
        return


def release_lock(path: str | os.PathLike) -> None:
    """The run at `path` is written (or the fit ended): another process may write it now (hold_lock)."""
    lock = _lock_file(Path(path).expanduser())
    if lock in _HELD:
        _HELD.discard(lock)
        lock.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(parent: Path, stem: str) -> None:
    """Delete temporary folders of `stem` left in `parent` by processes that died."""
    if not parent.is_dir():
        return
    for p in parent.glob(f".{stem}{_TMP_MARK}*"):
        try:
            pid = int(p.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        if not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def atomic_dir(dest: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes `dest` when the block ends without error.

    With replace=True an existing `dest` is swapped out only after the new one is
    complete; otherwise an existing `dest` is left as it is and the new copy dropped
    (another process finished the same work first).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest.parent, dest.name)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}{_TMP_MARK}{os.getpid()}-"))
    default_mode(tmp, directory=True)
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if dest.exists():
            if not replace:
                shutil.rmtree(tmp, ignore_errors=True)
                return
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
