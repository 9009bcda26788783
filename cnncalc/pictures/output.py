"""Writing a picture to a file: checked before the work, written atomically (a temporary file in the
same folder, then a rename), never over a special file, through a link or over an input."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ..errors import SpecError, Where


def check_target(path: str, force: bool, inputs: tuple = ()) -> Path:
    """Refuse, before any work, a target that is a link, a special file, an input, or exists (no `force`)."""
    target = Path(path)
    where = Where(str(path))
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        info = None
    except OSError as e:
        raise SpecError(f"cannot use this output file: {e.strerror or e}", where=where) from None
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise SpecError("the output path is a symbolic link; cnncalc never writes through a link",
                            where=where, fix="give the path of the file itself, or another name")
        if not stat.S_ISREG(info.st_mode):
            raise SpecError("the output path is not a regular file (a directory, device or pipe)", where=where,
                            fix="give a file name such as lenet5.svg")
        for spec in inputs:
            if spec and Path(spec).exists() and os.path.samefile(spec, target):
                raise SpecError("refusing to write over the spec being drawn", where=where,
                                fix="choose another -o FILE; the spec itself is never modified")
        if not force:
            raise SpecError("the file already exists", where=where,
                            fix="add --force to overwrite it, or choose another -o FILE")
    if not target.parent.is_dir() if str(target.parent) else False:
        raise SpecError("the folder of the output file does not exist", where=where,
                        fix="create it first, or choose another path")
    return target


def write_text(text: str, path: str, force: bool, inputs: tuple = ()) -> None:
    """Write `text` (UTF-8) to `path` atomically, after the checks of `check_target`."""
    target = check_target(path, force, inputs)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise SpecError(f"cannot write the output file: {e.strerror or e}", where=Where(str(path))) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        check_target(path, force, inputs)      # nothing appeared there meanwhile
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
