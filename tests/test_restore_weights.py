"""benchmarks/restore_weights.py: archived stage weights come back from git history, byte for byte, or not at all."""

import csv
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
restore_weights = pytest.importorskip("restore_weights")

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def archived_repo(tmp_path):
    """A repository where two weight files were committed and then removed, with their index."""
    repo = tmp_path / "repo"
    (repo / "w").mkdir(parents=True)
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.org")
    git(repo, "config", "user.name", "t")
    blobs = {"w/a.pt": bytes(range(256)) * 40, "w/b.pt": b"\x00weights\xff" * 7}
    for path, data in blobs.items():
        (repo / path).write_bytes(data)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "weights")
    commit = git(repo, "rev-parse", "HEAD")
    git(repo, "rm", "-q", "w/a.pt", "w/b.pt")
    git(repo, "commit", "-q", "-m", "archive")
    index = tmp_path / "index.csv"
    with index.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(restore_weights.COLUMNS)
        for path, data in blobs.items():
            w.writerow([path, commit, hashlib.sha256(data).hexdigest(), len(data), "test"])
    return repo, index, blobs


def test_restore_writes_the_committed_bytes_back(archived_repo):
    repo, index, blobs = archived_repo
    assert not (repo / "w/a.pt").exists()
    assert restore_weights.main(["--index", str(index), "--root", str(repo), "a"]) == 0
    assert (repo / "w/a.pt").read_bytes() == blobs["w/a.pt"]
    assert not (repo / "w/b.pt").exists()  # only what was named
    assert restore_weights.main(["--index", str(index), "--root", str(repo), "--all"]) == 0
    assert (repo / "w/b.pt").read_bytes() == blobs["w/b.pt"]
    entries = restore_weights.read_index(index)
    assert restore_weights.restore(entries[0], repo) == "present"  # idempotent
    assert not list((repo / "w").glob(".*"))  # no temporary file left behind


def test_restore_refuses_a_wrong_hash_and_a_differing_file(archived_repo):
    repo, index, _ = archived_repo
    entry = restore_weights.read_index(index)[0]
    bad = restore_weights.ArchivedFile(entry.path, entry.commit, "0" * 64, entry.bytes, "")
    with pytest.raises(ValueError, match="does not match"):
        restore_weights.restore(bad, repo)
    assert not (repo / entry.path).exists()  # nothing half-written
    (repo / entry.path).parent.mkdir(exist_ok=True)
    (repo / entry.path).write_bytes(b"other")
    with pytest.raises(FileExistsError, match="--force"):
        restore_weights.restore(entry, repo)
    assert restore_weights.restore(entry, repo, force=True) == "restored"


def test_restore_names_bad_input(archived_repo, tmp_path):
    repo, index, _ = archived_repo
    entries = restore_weights.read_index(index)
    with pytest.raises(KeyError, match="not in the archive: \\['zzz'\\]"):
        restore_weights.select(entries, ["a", "zzz"])
    missing_commit = restore_weights.ArchivedFile(entries[0].path, "f" * 40, entries[0].sha256, entries[0].bytes, "")
    with pytest.raises(RuntimeError, match="git cannot read"):
        restore_weights.restore(missing_commit, repo)
    no_column = tmp_path / "bad.csv"
    no_column.write_text("path,commit\nx,y\n")
    with pytest.raises(ValueError, match="missing column"):
        restore_weights.read_index(no_column)
    bad_row = tmp_path / "bad-row.csv"
    bad_row.write_text("path,commit,sha256,bytes,what\nx,y,z,many,w\n")
    with pytest.raises(ValueError, match="line 2"):
        restore_weights.read_index(bad_row)
    with pytest.raises(SystemExit):
        restore_weights.main(["--index", str(index), "--root", str(repo)])  # nothing named


def test_the_projects_archive_is_recoverable_from_its_history():
    """Every archived file of this repository is readable at its commit with the listed hash, and absent from the
    working tree's index (the point of archiving it)."""
    try:
        if git(ROOT, "rev-parse", "--is-shallow-repository") == "true":
            pytest.skip("a shallow clone lacks the archive's commits")
    except subprocess.CalledProcessError:
        pytest.skip("not a git checkout")
    entries = restore_weights.read_index()
    assert entries
    tracked = set(git(ROOT, "ls-files", "benchmarks/results/best-cpu").splitlines())
    for e in entries:
        data = restore_weights.git_blob(ROOT, e.commit, e.path)
        assert hashlib.sha256(data).hexdigest() == e.sha256 and len(data) == e.bytes, e.path
        assert e.path not in tracked, f"{e.path} is archived but still tracked"
