"""Files cnncalc writes (`forward --save-output`, `key -o`, `draw -o`): checked before the work starts,
written to a temporary file beside the destination and renamed over it, never over anything but a
regular file, never through a link or over one of the command's inputs; the temporary file is removed
on any exit, SIGTERM, SIGHUP and Ctrl-C included.

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> out = Output(os.path.join(folder, "key.yaml"))      # checked now: raises SpecError if it cannot be written
>>> out.write_text("expect: {params: 760}\\n")
>>> Output(os.path.join(folder, "key.yaml"))              # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
cnncalc.errors.SpecError: ...already exists
"""
from __future__ import annotations

import errno
import os
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from .errors import SpecError, Where

_TEMP_PREFIX, _TEMP_SUFFIX = ".cnncalc-", ".tmp"   # short, whatever the destination's name
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))
_DISK_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied", errno.EFBIG: "the file is too large for the file system",
                errno.ENAMETOOLONG: "the name is too long", errno.EIO: "an input/output error"}


class Output:
    """A file to write: `Output(path, force=..., inputs=[...])` checks it at once (before the work);
    `write(fill)` / `write_text(text)` check again and write it atomically.

    `inputs` are the command's input files (spec, weights, data): the output may never be one of them,
    whatever its name (hard links and symlinks included). `size`, when known, is compared with the
    free space of the folder."""

    def __init__(self, path: str | os.PathLike, *, force: bool = False, inputs: Iterable = (), size: int = 0):
        self.given = os.fspath(path)
        self.path = Path(path)
        self.force = force
        self.inputs = [Path(p) for p in inputs if p]
        self._check_name()
        self._check_folder(size)
        self._check_target()

    # --- checks -------------------------------------------------------------------------------------

    def _fail(self, what: str, fix: str) -> SpecError:
        return SpecError(what, fix=fix, where=Where(str(self.path)))

    def _check_name(self) -> None:
        text = self.given
        name = os.fsencode(self.path.name)
        if not name or text.endswith(os.sep) or self.path.name in (".", ".."):
            raise self._fail("this is not a file name", "give a file name such as out.npy")
        limit = _name_max(self.path.parent)
        if len(name) > limit:
            raise self._fail(f"the file name is {len(name):,} bytes long; the file system allows {limit}",
                             "choose a shorter name")
        if len(os.fsencode(text)) >= 4096:
            raise self._fail("the path is longer than the system allows (4,095 bytes)", "choose a shorter path")

    def _check_target(self) -> None:
        """What stands at the path now: nothing, or (with force) a regular file that is no input."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError as e:
            raise self._fail(f"cannot look at this path: {_reason(e)}", "choose another path") from None
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(self.path)
            dangling = "" if os.path.exists(self.path) else ", which does not exist"
            raise self._fail(f"this is a symbolic link to '{target}'{dangling}; cnncalc never writes through a link",
                             "give the real path of the file, or another name")
        for test, kind in _KINDS:
            if test(st.st_mode):
                raise self._fail(f"this is {kind}; cnncalc only ever replaces regular files",
                                 "give the name of a new or regular file")
        for source in self.inputs:
            if _same(self.path, source):
                raise self._fail(f"this is the same file as the input '{source}'; cnncalc never writes over "
                                 "its inputs", "choose another name")
        if not self.force:
            raise self._fail("the file already exists", "choose another name, or add --force to replace it")

    def _check_folder(self, size: int) -> None:
        folder = self.path.parent
        try:
            if not stat.S_ISDIR(os.stat(folder).st_mode):
                raise self._fail(f"'{folder}' is not a folder", "give a path inside an existing folder")
        except FileNotFoundError:
            raise self._fail(f"the folder '{folder}' does not exist", "create it first, or choose another path") \
                from None
        except NotADirectoryError:
            raise self._fail(f"'{folder}' is not a folder", "give a path inside an existing folder") from None
        except OSError as e:
            raise self._fail(f"cannot use the folder '{folder}': {_reason(e)}", "choose another folder") from None
        try:  # the only sure test: create (and remove) a file where the temporary file will go
            with _temporary(folder) as (fd, _):
                os.close(fd)
        except OSError as e:
            raise self._fail(f"cannot write in the folder '{folder}': {_reason(e)}",
                             "choose a folder you can write to") from None
        if size:
            free = _free_bytes(folder)
            if free is not None and free < size:
                raise self._fail(f"the output needs {size:,} bytes but the disk has {free:,} free",
                                 "free some space, or write to another disk")

    # --- writing ------------------------------------------------------------------------------------

    def write_text(self, text: str) -> None:
        data = text.encode("utf-8")
        self.write(lambda f: f.write(data))

    def write(self, fill: Callable[[BinaryIO], object]) -> None:
        """Write through `fill(binary_file)` into a temporary file beside the destination, then move it
        into place. Nothing is left behind on any failure or signal; the old file (with --force) stays
        whole until the rename."""
        self._check_target()
        try:
            with _temporary(self.path.parent) as (fd, temp):
                with os.fdopen(fd, "wb") as f:
                    fill(f)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; give what a new file would get
                self._check_target()
                self._place(temp)
        except OSError as e:
            raise self._fail(f"cannot write the file: {_reason(e)}",
                             "free some space or choose another folder; nothing was changed") from None

    def _place(self, temp: str) -> None:
        if not self.force:  # link() never replaces: a file that appeared meanwhile is kept
            try:
                os.link(temp, self.path)
                return
            except FileExistsError:
                raise self._fail("the file appeared while cnncalc was working",
                                 "choose another name, or add --force to replace it") from None
            except OSError:
                pass  # a file system without hard links: rename after the check just made
        os.replace(temp, self.path)


class _Signal(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _signals_raise():
    """While a temporary file exists, SIGTERM and SIGHUP raise (so that `finally` removes it); afterwards
    the signal is delivered again as it would have been (by default: the process ends by it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Signal(signum)

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    except _Signal as s:
        for signum, old in previous.items():
            signal.signal(signum, old)
        previous = {}
        old = signal.getsignal(s.signum)
        if callable(old):
            old(s.signum, None)
        else:
            os.kill(os.getpid(), s.signum)  # the default action: the process ends by the signal
        raise SystemExit(128 + s.signum) from None
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def _temporary(folder):
    """(fd, path) of a new temporary file in `folder`, removed on leaving, whatever the way out."""
    path = None
    with _signals_raise():
        try:
            fd, path = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=folder)
            yield fd, path
        finally:
            if path is not None:
                _remove(path)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def _reason(error: OSError) -> str:
    return _DISK_ERRORS.get(error.errno) or error.strerror or type(error).__name__
