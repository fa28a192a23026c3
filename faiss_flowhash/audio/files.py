"""Audio files on disk: the one suffix list and folder walk of the package (ingest, training sources,
the benchmark corpus), and the expansion of ingest arguments (files, folders, glob patterns)."""

import glob
import os

__all__ = ["AUDIO_EXTENSIONS", "audio_files_in", "expand_paths"]

#: Suffixes picked up inside folders (files named explicitly are always tried, whatever their suffix).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64")


def audio_files_in(path) -> list[str]:
    """Files below folder ``path`` (recursively) whose suffix is in ``AUDIO_EXTENSIONS`` (any case), sorted
    folder by folder (deterministic); paths joined onto ``path`` as given."""
    path = os.fspath(path)
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
            found = audio_files_in(p)
            if not found:
                missing.append((p, "folder holds no audio files"))
        elif os.path.exists(p):
            found = [p]
        elif glob.has_magic(p):
            found = []
            for m in sorted(glob.glob(p, recursive=True)):
                found += audio_files_in(m) if os.path.isdir(m) else [m]
            if not found:
                missing.append((p, "pattern matches no file"))
        else:
            found = []
            missing.append((p, "no such file or folder"))
        files += [os.path.abspath(f) for f in found]
    return list(dict.fromkeys(files)), missing
