"""The one place jaxviz writes files: every write is atomic.

    io.write_text(out / "report.md", text)
    io.write_json(out / "metrics.json", metrics)
    io.save_figure(fig, out / "architecture.png", formats=["png", "svg"])   # closes fig
    with io.open_atomic(path, "wb") as fh: ...                              # anything else

A file appears under its final name complete or not at all, and an existing file is
replaced only once the new one is fully written (and flushed to disk). On Linux the data
goes to an unnamed O_TMPFILE in the target's directory, so even a process killed mid-write
leaves no stray file behind; elsewhere a hidden `.jaxviz-*.tmp` sibling is used and removed on
any error. Parent directories are created as needed. Nothing here imports the rest of jaxviz.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

def _as_path(path, what: str = "path") -> Path:
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a str or os.PathLike file path; "
                        f"got {type(path).__name__} {path!r}")
    path = Path(path)
    if not path.name or str(path).endswith(os.sep):
        raise ValueError(f"{what} must name a file, not a directory; got {str(path)!r}")
    return path


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


def _make_dir(directory: Path, what: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        raise NotADirectoryError(f"{what} {str(directory)!r} is not a directory: it or one of "
                                 f"its parents is a file") from err
    except OSError as err:
        raise type(err)(f"{what} {str(directory)!r} cannot be created: {_reason(err)}") from err


def ensure_dir(directory, what: str = "directory") -> Path:
    """Create `directory` (and its parents) if missing and check that files can be made in
    it, without leaving anything there. Raises one OSError naming `what` and the path."""
    if isinstance(directory, bool) or not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"{what} must be a str or os.PathLike directory path; "
                        f"got {type(directory).__name__} {directory!r}")
    directory = Path(directory)
    _make_dir(directory, what)
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise PermissionError(f"{what} {str(directory)!r} is not writable: "
                              f"{_reason(err)}") from err
    return directory


def _open_unnamed(directory: Path):
    """(fd, None) for an unnamed O_TMPFILE in directory, else (fd, hidden temp path)."""
    flag = getattr(os, "O_TMPFILE", 0)
    if flag and os.path.isdir("/proc/self/fd"):  # naming it later goes through /proc
        try:
            return os.open(directory, flag | os.O_WRONLY, 0o666), None
        except OSError:  # the filesystem does not support it: fall back to a named temp
            pass
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".jaxviz-", suffix=".tmp")
    return fd, tmp


def _publish(fd: int, tmp: str | None, path: Path) -> None:
    if tmp is not None:
        os.replace(tmp, path)
        return
    # Give the unnamed file a hidden name, then move it over the target. dst_dir_fd makes
    # os.link use linkat(AT_SYMLINK_FOLLOW), which links the file behind /proc's symlink.
    name = f".{path.name}.{os.urandom(6).hex()}.tmp"
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd)
        try:
            os.replace(name, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def open_atomic(path, mode: str = "wb", *, encoding: str | None = None) -> Iterator[Any]:
    """A file object whose content replaces `path` only when the block ends without error.

    mode: "wb" or "w" (then `encoding`, default utf-8). On any exception nothing changes.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w'; got {mode!r}")
    path = _as_path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {str(path)!r}: it is a directory")
    _make_dir(path.parent, f"cannot write {str(path)!r}: directory")
    try:
        fd, tmp = _open_unnamed(path.parent)
    except OSError as err:
        raise type(err)(f"cannot write {str(path)!r}: {_reason(err)}") from err
    try:
        kw = {"encoding": encoding or "utf-8"} if mode == "w" else {}
        with os.fdopen(fd, mode, closefd=False, **kw) as fh:
            yield fh
            fh.flush()
            os.fsync(fd)
        _publish(fd, tmp, path)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def write_bytes(path, data: bytes) -> Path:
    """Write `data` to path atomically; returns the path."""
    with open_atomic(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write `text` to path atomically; returns the path."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str; got {type(text).__name__}")
    with open_atomic(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def _jsonable(v):
    # numpy and JAX scalars and arrays have .tolist(); anything else is written as its str
    return v.tolist() if hasattr(v, "tolist") else str(v)


def write_json(path, obj, *, indent: int | None = 2) -> Path:
    """Write obj as JSON atomically (arrays and numpy scalars as lists / numbers)."""
    return write_text(path, json.dumps(obj, indent=indent, default=_jsonable) + "\n")


def save_npz(path, **arrays) -> Path:
    """Save named arrays as an .npz atomically: `save_npz(p, scores=s, labels=y)`."""
    import numpy as np  # noqa: PLC0415

    if not arrays:
        raise ValueError("save_npz needs at least one named array; got none")
    with open_atomic(path, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


def save_figure(fig, path, *, formats: Sequence[str] | None = None, dpi: float | None = None,
                rc: Mapping[str, Any] | None = None) -> list[Path]:
    """Write a matplotlib figure atomically, one file per format, then close the figure.

    formats: e.g. ["png", "svg"] -> path with each suffix (default: path's own suffix);
    dpi: resolution (default: the rc's savefig.dpi); rc: matplotlib settings in force while
    drawing (e.g. `jaxviz.plot.core.STYLE`). The figure is closed even on error.
    Returns the paths written.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    try:
        path = _as_path(path)
        formats = list(formats) if formats else [path.suffix.lstrip(".") or "png"]
        written = []
        for fmt in formats:
            target = path.with_suffix("." + fmt)
            with plt.rc_context(dict(rc or {})), open_atomic(target, "wb") as fh:
                fig.savefig(fh, format=fmt, **({} if dpi is None else {"dpi": dpi}))
            written.append(target)
        return written
    finally:
        plt.close(fig)
