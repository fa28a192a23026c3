"""Assemble a real-music corpus offline from Debian game-music packages.

    python -m bench.audio_corpus                 # all default packages
    python -m bench.audio_corpus --quick         # ~10 files, for a smoke test
    python -m bench.audio_corpus --min-hours 4   # stop adding packages once 4 h are in

Steps: ``apt-get download PKG`` into ``bench/data/debs/`` (kept, so reruns are offline),
``dpkg -x`` into ``bench/data/pkgs/PKG/``, find audio files (ogg/opus/mp3/flac/wav) at
least ``--min-track-s`` long (shorter ones are sound effects and voice lines), drop
duplicates by sha256 of the decoded-from file, convert to 16 kHz mono 16-bit FLAC under
``bench/data/corpus/PKG/...``, and write ``bench/data/corpus/manifest.json``:

    {"sample_rate": 16000, "split": "package"|"file", "packages": {PKG: {...}},
     "files": [{"file", "package", "licence", "duration_s", "source", "sha256", "split"}]}

``file`` is relative to the corpus directory. Each package's Debian copyright file is
copied next to its tracks. Licences come from that file (DEP-5 stanzas or keywords),
cross-checked against ``VERIFIED_LICENCES`` (read by hand). Reruns skip finished work.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from faiss_flowhash.audio.files import audio_files_in
from faiss_flowhash.audio.io import AudioDecodeError, audio_duration, content_hash, load_audio, save_audio

DEFAULT_PACKAGES = (
    "wesnoth-1.16-music",
    "singularity-music",
    "hedgewars-data",
    "supertux-data",
    "extremetuxracer-data",
    "lincity-ng-data",
    "frozen-bubble-data",
)
# Licence of the *music* in each package, read by hand from /usr/share/doc/PKG/copyright.
VERIFIED_LICENCES = {
    "wesnoth-1.16-music": "GPL-2+",  # whole-package notice: GPL version 2 or later
    "singularity-music": "CC-BY-SA-3.0",  # CC BY-SA text; README: "BY-SA 3.0"
    "hedgewars-data": "GPL-2",  # DEP-5 "Files: *" (Data/Music has no own stanza)
    "supertux-data": "GPL-2+",  # DEP-5 "Files: data/music/*"
    "extremetuxracer-data": "GPL-2+",  # DEP-5 "Files: *"
    "lincity-ng-data": "GPL-2+",  # DEP-5 "Files: *"
    "frozen-bubble-data": "GPL-2",  # DEP-5 "Files: *"
}


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- packages

def download(pkg: str, debs: Path) -> Path:
    debs.mkdir(parents=True, exist_ok=True)
    have = sorted(debs.glob(f"{pkg}_*.deb"))
    if have:
        return have[-1]
    log(f"[{pkg}] apt-get download")
    r = subprocess.run(["apt-get", "download", pkg], cwd=debs, capture_output=True, text=True)
    have = sorted(debs.glob(f"{pkg}_*.deb"))
    if r.returncode != 0 or not have:
        raise RuntimeError(f"apt-get download {pkg} failed: {r.stderr.strip()[-500:]}")
    return have[-1]


def unpack(deb: Path, dest: Path) -> Path:
    done = dest / ".unpacked"
    if not done.exists():
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(deb), str(dest)], check=True)
        done.write_text(deb.name)
    return dest


def deb_version(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True).stdout.strip()


# ----------------------------------------------------------------------------- licences

def _dep5_stanzas(text: str) -> list[tuple[list[str], str]]:
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t]+.*)*)", block, re.M)
        lic = re.search(r"^License:[ \t]*(\S[^\n]*)", block, re.M)
        if files and lic:
            stanzas.append((files.group(1).split(), lic.group(1).strip()))
    return stanzas


def _pattern_matches(pattern: str, rel: str) -> bool:
    # source-tree paths differ from installed ones (data/music/* vs usr/share/games/x/music/...):
    # also try the pattern with leading directories removed, anchored at any directory
    # (a stripped pattern keeps at least one literal directory: "external/zlib/*" must not become "*")
    if fnmatch.fnmatch(rel, pattern):
        return True
    parts = pattern.split("/")
    for k in range(len(parts) - 1):
        dirs = parts[k:-1]
        if not any(d and not any(c in d for c in "*?[") for d in dirs):
            continue
        if fnmatch.fnmatch(rel, "*/" + "/".join(parts[k:])):
            return True
    return False


def _keyword_licence(text: str) -> str | None:
    t = " ".join(text.split())
    m = re.search(r"Attribution[- ,]+ShareAlike[^.]{0,40}?(\d\.\d)", t) or re.search(r"BY-SA (\d\.\d)", t)
    if m:
        return f"CC-BY-SA-{m.group(1)}"
    m = re.search(r"GNU General Public License[^.]{0,120}?version (\d)", t)
    if m:
        later = re.search(r"later version|any later", t[m.start():m.start() + 400])
        return f"GPL-{m.group(1)}{'+' if later else ''}"
    return None


def detect_licence(copyright_text: str, rel: str) -> tuple[str | None, str]:
    """(licence, how) for installed path ``rel`` from a Debian copyright file."""
    if copyright_text.startswith("Format:"):
        found = None
        for patterns, lic in _dep5_stanzas(copyright_text):
            if any(_pattern_matches(p, rel) for p in patterns):
                found = lic  # DEP-5: the last matching stanza wins
        if found:
            return found, "dep5"
    return _keyword_licence(copyright_text), "keywords"


# ----------------------------------------------------------------------------- corpus

def find_audio(root: Path) -> list[Path]:
    return sorted(Path(p) for p in audio_files_in(root))


def assign_splits(entries: list[dict], mode: str, test_fraction: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if mode == "file":
        order = rng.permutation(len(entries))
        n_test = int(round(test_fraction * len(entries)))
        for rank, i in enumerate(order):
            entries[i]["split"] = "test" if rank < n_test else "train"
        return
    hours: dict[str, float] = {}
    for e in entries:
        hours[e["package"]] = hours.get(e["package"], 0.0) + e["duration_s"] / 3600
    total = sum(hours.values())
    test, acc = set(), 0.0
    for pkg in rng.permutation(sorted(hours)).tolist():
        if acc >= test_fraction * total or len(test) == len(hours) - 1:
            break
        test.add(pkg)
        acc += hours[pkg]
    for e in entries:
        e["split"] = "test" if e["package"] in test else "train"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parent / "data", help="work directory")
    ap.add_argument("--packages", nargs="+", default=list(DEFAULT_PACKAGES))
    ap.add_argument("--quick", action="store_true", help="stop after ~10 files")
    ap.add_argument("--max-files", type=int, default=None, help="stop after this many files in all")
    ap.add_argument("--min-hours", type=float, default=None, help="stop adding packages once this much audio is in")
    ap.add_argument("--min-track-s", type=float, default=30.0, help="skip shorter files (sound effects)")
    ap.add_argument("--split", choices=["package", "file"], default="package")
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample-rate", type=int, default=16000)
    args = ap.parse_args(argv)
    max_files = args.max_files if args.max_files is not None else (10 if args.quick else None)

    corpus = args.data / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    manifest_path = corpus / "manifest.json"
    old = {}
    if manifest_path.exists():
        old = {e["source"]: e for e in json.loads(manifest_path.read_text()).get("files", [])}

    entries, packages, seen, problems = [], {}, {}, []
    t0 = time.time()
    for pkg in args.packages:
        hours = sum(e["duration_s"] for e in entries) / 3600
        if args.min_hours is not None and hours >= args.min_hours:
            log(f"reached {hours:.2f} h >= --min-hours {args.min_hours}: not adding {pkg} and later")
            break
        if max_files is not None and len(entries) >= max_files:
            break
        try:
            deb = download(pkg, args.data / "debs")
        except RuntimeError as e:
            problems.append(str(e))
            log(f"[{pkg}] skipped: {e}")
            continue
        root = unpack(deb, args.data / "pkgs" / pkg)
        cp = root / "usr/share/doc" / pkg / "copyright"
        cp_text = cp.read_text(errors="replace") if cp.exists() else ""
        (corpus / pkg).mkdir(parents=True, exist_ok=True)
        if cp.exists():
            shutil.copyfile(cp, corpus / pkg / "copyright")
        pkg_entries = []
        for src in find_audio(root):
            if max_files is not None and len(entries) >= max_files:
                break
            rel = src.relative_to(root).as_posix()
            source = f"{pkg}:{rel}"
            try:
                dur = audio_duration(src)
            except (AudioDecodeError, FileNotFoundError) as e:
                problems.append(f"{source}: {e}")
                continue
            if dur < args.min_track_s:
                continue
            digest = content_hash(src)
            if digest in seen:
                log(f"  duplicate of {seen[digest]}: {source}")
                continue
            seen[digest] = source
            out_rel = Path(pkg) / Path(*Path(rel).parts[-2:]).with_suffix(".flac")  # parent dir + name
            if any(e["file"] == out_rel.as_posix() for e in pkg_entries):
                out_rel = out_rel.with_name(f"{out_rel.stem}-{digest[:8]}.flac")
            out = corpus / out_rel
            if not (source in old and old[source]["sha256"] == digest and out.exists()):
                try:
                    x = load_audio(src, sample_rate=args.sample_rate)
                except AudioDecodeError as e:
                    problems.append(f"{source}: {e}")
                    log(f"  undecodable, skipped: {e}")
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_suffix(".tmp.flac")
                save_audio(tmp, np.clip(x, -1.0, 1.0), args.sample_rate, subtype="PCM_16")
                tmp.replace(out)  # a killed run never leaves a half-written track behind
                dur = len(x) / args.sample_rate
            else:
                dur = old[source]["duration_s"]
            lic, how = detect_licence(cp_text, rel)
            verified = VERIFIED_LICENCES.get(pkg)
            if verified and lic != verified:
                how = f"verified (detected {lic!r} by {how})"
                lic = verified
            entry = dict(file=out_rel.as_posix(), package=pkg, licence=lic or "unknown", licence_how=how,
                         duration_s=round(dur, 3), source=source, sha256=digest)
            pkg_entries.append(entry)
            entries.append(entry)
            log(f"  {out_rel.as_posix()}  {dur / 60:5.1f} min  {lic}")
        ph = sum(e["duration_s"] for e in pkg_entries) / 3600
        packages[pkg] = dict(version=deb_version(deb), n_files=len(pkg_entries), hours=round(ph, 3),
                             licences=sorted({e["licence"] for e in pkg_entries}),
                             copyright=f"{pkg}/copyright" if cp.exists() else None)
        log(f"[{pkg}] {len(pkg_entries)} files, {ph:.2f} h ({time.time() - t0:.0f} s elapsed)")

    if not entries:
        log("no audio found")
        return 1
    assign_splits(entries, args.split, args.test_fraction, args.seed)
    if args.split == "package" and len(packages) < 2:
        log("warning: --split package with one package puts everything in train; use --split file")
    manifest = dict(sample_rate=args.sample_rate, format="FLAC PCM_16 mono", split=args.split,
                    test_fraction=args.test_fraction, seed=args.seed, min_track_s=args.min_track_s,
                    packages=packages, files=entries, problems=problems)
    manifest_path.write_text(json.dumps(manifest, indent=1))

    total = sum(e["duration_s"] for e in entries) / 3600
    log(f"\n{'package':<24}{'files':>6}{'hours':>8}  licence")
    for pkg, info in packages.items():
        log(f"{pkg:<24}{info['n_files']:>6}{info['hours']:>8.2f}  {', '.join(info['licences'])}")
    for split in ("train", "test"):
        sel = [e for e in entries if e["split"] == split]
        log(f"{split}: {len(sel)} files, {sum(e['duration_s'] for e in sel) / 3600:.2f} h")
    log(f"total: {len(entries)} files, {total:.2f} h; {len(problems)} problems; manifest {manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
