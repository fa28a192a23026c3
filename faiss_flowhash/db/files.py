"""Expand ingest arguments (files, folders searched recursively, glob patterns) into audio file paths."""

import glob
import os

__all__ = ["AUDIO_EXTENSIONS", "expand_paths"]

#: Suffixes picked up inside folders (files named explicitly are always tried, whatever their suffix).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64")


def _folder(path: str) -> list[str]:
    out = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        out += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(AUDIO_EXTENSIONS)]
    return out


def expand_paths(paths) -> tuple[list[str], list[tuple[str, str]]]:
    """(audio files as absolute paths in order, without duplicates; (argument, reason) for arguments
    that match nothing).

    Args:
        paths: str/PathLike items: a file (taken as is), a folder (audio files below it, recursively,
            sorted) or a glob pattern (``*``, ``?``, ``[``; ``**`` recurses).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files, missing = [], []
    for p in paths:
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(f"paths: expected str or os.PathLike items, got {type(p).__name__}")
        p = os.fspath(p)
        if os.path.isdir(p):
            found = _folder(p)
            if not found:
                missing.append((p, "folder holds no audio files"))
        elif os.path.exists(p):
            found = [p]
        elif glob.has_magic(p):
            found = []
            for m in sorted(glob.glob(p, recursive=True)):
                found += _folder(m) if os.path.isdir(m) else [m]
            if not found:
                missing.append((p, "pattern matches no file"))
        else:
            found = []
            missing.append((p, "no such file or folder"))
        files += [os.path.abspath(f) for f in found]
    return list(dict.fromkeys(files)), missing
