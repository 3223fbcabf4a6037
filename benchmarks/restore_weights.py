"""Restore archived weights of training stages from the git history.

The weights of stages that were not shipped, or that later stages superseded, are 1.8-4 MB each; kept in the working
tree they would fill the 64 MiB that a run on a lent GPU machine carries. They are archived instead: removed from the
tree, each listed in ``benchmarks/results/best-cpu/archived-weights.csv`` with the commit that still holds it and its
SHA-256. This script writes them back where the tables and the history document say they are.

    python benchmarks/restore_weights.py stage31 stage32     # by name (file name without .pt) or path
    python benchmarks/restore_weights.py --all
    python benchmarks/restore_weights.py --list

A shallow clone lacks the old commits: ``git fetch --unshallow`` first (the error says so).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from diffnorm.grid import write_atomic

ROOT = Path(__file__).resolve().parents[1]
INDEX = ROOT / "benchmarks" / "results" / "best-cpu" / "archived-weights.csv"
COLUMNS = ("path", "commit", "sha256", "bytes", "what")


@dataclass(frozen=True)
class ArchivedFile:
    path: str  # relative to the repository root
    commit: str  # a commit whose tree holds the file
    sha256: str
    bytes: int
    what: str

    @property
    def name(self) -> str:
        return Path(self.path).stem


def read_index(index: Path = INDEX) -> list[ArchivedFile]:
    """The archive's entries; a missing column or a malformed row is an error naming the row."""
    if not index.is_file():
        raise FileNotFoundError(f"no archive index at {index}")
    with index.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{index}: missing column(s) {missing}; expected {list(COLUMNS)}")
        entries = []
        for line, row in enumerate(reader, start=2):
            try:
                entries.append(ArchivedFile(row["path"], row["commit"], row["sha256"].lower(), int(row["bytes"]),
                                            row["what"]))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{index}, line {line}: malformed row {row} ({err})") from None
    return entries


def select(entries: list[ArchivedFile], wanted: list[str]) -> list[ArchivedFile]:
    """The entries named by file stem or by path; an unknown name is an error listing the known ones."""
    by_key = {e.name: e for e in entries} | {e.path: e for e in entries}
    unknown = [w for w in wanted if w not in by_key]
    if unknown:
        raise KeyError(f"not in the archive: {unknown}; archived: {sorted(e.name for e in entries)}")
    return [by_key[w] for w in dict.fromkeys(wanted)]


def git_blob(root: Path, commit: str, path: str) -> bytes:
    """The file's bytes at that commit, read by git (nothing is checked out or executed)."""
    result = subprocess.run(["git", "-C", str(root), "cat-file", "blob", f"{commit}:{path}"],
                            capture_output=True, check=False)
    if result.returncode != 0:
        shallow = subprocess.run(["git", "-C", str(root), "rev-parse", "--is-shallow-repository"],
                                 capture_output=True, text=True, check=False).stdout.strip() == "true"
        hint = " This clone is shallow: run `git fetch --unshallow` first." if shallow else ""
        raise RuntimeError(f"git cannot read {path} at {commit}: {result.stderr.decode().strip()}.{hint}")
    return result.stdout


def restore(entry: ArchivedFile, root: Path = ROOT, force: bool = False) -> str:
    """Write one archived file back, atomically and only if its SHA-256 matches; returns what was done."""
    target = root / entry.path
    if target.exists() and not force:
        if hashlib.sha256(target.read_bytes()).hexdigest() == entry.sha256:
            return "present"
        raise FileExistsError(f"{target} exists and differs from the archived file (use --force to overwrite)")
    data = git_blob(root, entry.commit, entry.path)
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256 or len(data) != entry.bytes:
        raise ValueError(f"{entry.path} at {entry.commit}: SHA-256 {digest} ({len(data)} bytes) does not match the "
                         f"index's {entry.sha256} ({entry.bytes} bytes)")
    write_atomic(target, lambda tmp: tmp.write_bytes(data))
    return "restored"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="file stems (stage31) or paths to restore")
    ap.add_argument("--all", action="store_true", help="restore every archived file")
    ap.add_argument("--list", action="store_true", help="list the archive and exit")
    ap.add_argument("--force", action="store_true", help="overwrite a file that exists and differs")
    ap.add_argument("--index", type=Path, default=INDEX)
    ap.add_argument("--root", type=Path, default=ROOT, help="the repository root (default: this checkout)")
    args = ap.parse_args(argv)
    entries = read_index(args.index)
    if args.list:
        for e in entries:
            state = "present" if (args.root / e.path).exists() else "archived"
            print(f"{e.name:24s} {e.bytes / 1e6:5.1f} MB  {state:8s}  {e.what}")
        return 0
    if not args.all and not args.names:
        ap.error("name the files to restore, or give --all or --list")
    chosen = entries if args.all else select(entries, args.names)
    for e in chosen:
        print(f"{restore(e, args.root, args.force):9s} {e.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
