"""Files on disk: the .part file, verification, no overwrite, free space, resume, the download directory."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from p2pchat.link import files
from p2pchat.link.files import NoSpace, PartFile, Source, download_dir


def _receive(directory: Path, offered: str, content: bytes, expected: bytes | None = None) -> Path | None:
    part = PartFile.create(directory, offered, len(content))
    for offset in range(0, len(content), 1000):
        part.write(offset, memoryview(content)[offset : offset + 1000])
    return part.finish(hashlib.sha256(content).digest() if expected is None else expected)


def test_saved_after_verification(tmp_path: Path) -> None:
    saved = _receive(tmp_path, "../../report.pdf", b"%PDF" * 1000)
    assert saved == tmp_path / "report.pdf"
    assert saved.read_bytes() == b"%PDF" * 1000
    assert oct(saved.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.pdf"]  # no .part left


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "notes (1).txt.part").write_text("someone else's partial")
    saved = _receive(tmp_path, "notes.txt", b"theirs")
    assert saved == tmp_path / "notes (2).txt"
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_name_taken_while_receiving_is_not_replaced(tmp_path: Path) -> None:
    part = PartFile.create(tmp_path, "race.txt", 3)
    part.write(0, b"new")
    (tmp_path / "race.txt").write_text("appeared meanwhile")
    assert part.finish(hashlib.sha256(b"new").digest()) == tmp_path / "race (1).txt"
    assert (tmp_path / "race.txt").read_text() == "appeared meanwhile"


def test_a_symlink_is_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("precious")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "x.part").symlink_to(target)
    saved = _receive(inbox, "x", b"data")
    assert saved == inbox / "x (1)"
    assert target.read_text() == "precious"


def test_a_mismatch_deletes_the_data(tmp_path: Path) -> None:
    assert _receive(tmp_path, "bad.bin", b"corrupt", expected=hashlib.sha256(b"honest").digest()) is None
    assert list(tmp_path.iterdir()) == []


def test_free_space_is_checked_before_accepting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(NoSpace, match="not enough space"):
        PartFile.create(tmp_path, "huge.iso", free)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing(small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "FREE_SPACE_RESERVE", 0)
    monkeypatch.setattr(files, "check_space", lambda directory, needed: None)  # the peer lied about the size
    part = PartFile.create(small_tmpfs, "big.bin", 10)
    with pytest.raises(NoSpace, match="disk is full"):
        for offset in range(0, 8 * 1024 * 1024, 65536):  # twice the tmpfs
            part.write(offset, bytes(65536))
    part.discard()
    assert list(small_tmpfs.iterdir()) == []


def test_resume_a_kept_part(tmp_path: Path) -> None:
    content = os.urandom(3 * files.READ_BUFFER + 5)
    part = PartFile.create(tmp_path, "movie.mkv", len(content))
    part.write(0, content[:2_000_000])
    part.keep()
    assert PartFile.resumable(tmp_path, "movie.mkv", len(content)) == 2_000_000
    assert PartFile.resumable(tmp_path, "movie.mkv", 1_000_000) is None  # larger than the offer: not this file
    assert PartFile.resumable(tmp_path, "other.mkv", len(content)) is None
    resumed = PartFile.resume(tmp_path, "movie.mkv", len(content))
    assert resumed.written == 2_000_000
    resumed.write(2_000_000, content[2_000_000:])
    assert resumed.finish(hashlib.sha256(content).digest()) == tmp_path / "movie.mkv"
    assert (tmp_path / "movie.mkv").read_bytes() == content


def test_a_symlinked_part_is_not_resumed(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_bytes(b"abc")
    (tmp_path / "f.part").symlink_to(tmp_path / "elsewhere")
    assert PartFile.resumable(tmp_path, "f", 10) is None


def test_source_reads_and_hashes(tmp_path: Path) -> None:
    content = os.urandom(3 * files.READ_BUFFER + 77)
    (tmp_path / "s").write_bytes(content)
    source = Source(tmp_path / "s")
    assert source.size == len(content)
    buffer = bytearray(100_000)
    offset = 0
    while n := source.read_into(memoryview(buffer), offset):
        assert buffer[:n] == content[offset : offset + n]
        offset += n
    assert source.digest() == hashlib.sha256(content).digest()
    source.seek(1000)  # a resume from an earlier offset: the hash starts again
    offset = 1000
    while n := source.read_into(memoryview(buffer), offset):
        offset += n
    assert source.digest() == hashlib.sha256(content).digest()
    source.close()


def test_source_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(files.LocalError, match="not a regular file"):
        Source(tmp_path)
    with pytest.raises(files.LocalError, match="cannot read"):
        Source(tmp_path / "missing")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('XDG_DOWNLOAD_DIR="$HOME/Téléchargements"', "HOME/Téléchargements"),
        ('XDG_DOWNLOAD_DIR="/srv/in"', "/srv/in"),
        ('XDG_DOWNLOAD_DIR="$HOME/"', "HOME/Downloads"),  # the home directory itself means "unset"
        ('XDG_DOWNLOAD_DIR="$(rm -rf ~)"', "HOME/Downloads"),  # shell syntax is not evaluated
        ("# nothing", "HOME/Downloads"),
    ],
)
def test_download_dir(tmp_path: Path, line: str, expected: str) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "user-dirs.dirs").write_text(f"# written by xdg-user-dirs-update\n{line}\n")
    found = download_dir(home=tmp_path / "HOME", environ={"XDG_CONFIG_HOME": str(config)})
    assert str(found).replace(str(tmp_path) + "/", "") == expected


def test_download_dir_without_config(tmp_path: Path) -> None:
    assert download_dir(environ={"HOME": str(tmp_path)}) == tmp_path / "Downloads"
