"""data_scripts.download: resume, retries, checksums and safe extraction (offline, loopback only)."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import pytest
from data_scripts_helpers import (
    UNREACHABLE_URL,
    FileServer,
    tar_member,
    tar_with_members,
)

import data_scripts.download as download
from data_scripts.download import Checksum, download_file, extract_archive, partial_path
from data_scripts.errors import ChecksumError, DataScriptError, DownloadError, UnsafeArchiveError
from data_scripts.locks import try_lock

PAYLOAD = os.urandom(200_000)
GOOD = Checksum("sha256", hashlib.sha256(PAYLOAD).hexdigest())


def fetch(url: str, destination: Path, checksum: Checksum | None = GOOD, **options) -> Path:
    return download_file(url, destination, checksum, backoff_seconds=0, progress=False, **options)


def test_download_writes_the_file_and_leaves_no_part(tmp_path: Path) -> None:
    with FileServer({"data.bin": PAYLOAD}) as server:
        path = fetch(server.url("data.bin"), tmp_path / "data.bin")
    assert path.read_bytes() == PAYLOAD
    assert not partial_path(path).exists()


def test_partial_download_resumes_with_a_range_request(tmp_path: Path) -> None:
    destination = tmp_path / "data.bin"
    already = 123_456
    partial_path(destination).write_bytes(PAYLOAD[:already])
    with FileServer({"data.bin": PAYLOAD}) as server:
        fetch(server.url("data.bin"), destination)
    assert destination.read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", f"bytes={already}-")]
    assert server.bytes_sent == len(PAYLOAD) - already


def test_server_that_ignores_range_gets_the_file_rewritten_from_the_start(tmp_path: Path) -> None:
    destination = tmp_path / "data.bin"
    partial_path(destination).write_bytes(b"stale bytes from another file")
    with FileServer({"data.bin": PAYLOAD}, honour_range=False) as server:
        fetch(server.url("data.bin"), destination)
    assert destination.read_bytes() == PAYLOAD


def test_complete_part_file_is_recognised_from_the_416_answer(tmp_path: Path) -> None:
    destination = tmp_path / "data.bin"
    partial_path(destination).write_bytes(PAYLOAD)
    with FileServer({"data.bin": PAYLOAD}) as server:
        fetch(server.url("data.bin"), destination)
    assert destination.read_bytes() == PAYLOAD
    assert server.bytes_sent == 0


def test_retry_after_a_server_error(tmp_path: Path) -> None:
    with FileServer({"data.bin": PAYLOAD}, script=["503", "503"]) as server:
        fetch(server.url("data.bin"), tmp_path / "data.bin")
    assert len(server.requests) == 3
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_retry_after_a_dropped_connection_resumes_where_it_stopped(tmp_path: Path) -> None:
    with FileServer({"data.bin": PAYLOAD}, script=["truncate"]) as server:
        fetch(server.url("data.bin"), tmp_path / "data.bin")
    (_, first_range), (_, second_range) = server.requests
    assert first_range is None
    assert second_range == f"bytes={len(PAYLOAD) // 2}-"
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_not_found_is_not_retried_and_names_the_status(tmp_path: Path) -> None:
    with FileServer({}) as server:
        with pytest.raises(DownloadError, match="HTTP 404"):
            fetch(server.url("missing.zip"), tmp_path / "missing.zip")
    assert len(server.requests) == 1


def test_gives_up_after_the_attempts_with_a_clear_message(tmp_path: Path) -> None:
    with FileServer({"data.bin": PAYLOAD}, script=["503"] * 3) as server:
        with pytest.raises(DownloadError, match="after 3 attempts.*Use the mirror"):
            fetch(
                server.url("data.bin"), tmp_path / "data.bin", attempts=3, advice="Use the mirror."
            )
    assert len(server.requests) == 3


def test_unreachable_server_reports_offline(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="offline") as caught:
        fetch(
            UNREACHABLE_URL + "data.bin", tmp_path / "data.bin", attempts=2, advice="Fix: --from."
        )
    assert "Fix: --from." in str(caught.value)
    assert not (tmp_path / "data.bin").exists()


def test_urlopen_failure_is_reported_as_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Network is unreachable")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(DownloadError, match="Network is unreachable.*offline"):
        fetch("https://example.org/data.bin", tmp_path / "data.bin", attempts=2)


def test_name_lookup_failure_is_offline_after_one_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    waits: list[float] = []

    def no_dns(host: str, *args: object, **kwargs: object) -> None:
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(download.time, "sleep", waits.append)
    for variable in ("http_proxy", "HTTP_PROXY"):  # the lookup must be of the URL's host
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(DownloadError, match="after 2 attempts.*not known.*offline"):
        download_file("http://mirror.invalid/data.bin", tmp_path / "data.bin", progress=False)
    assert lookups == ["mirror.invalid"] * 2  # the default 4 attempts are not all spent
    assert sum(waits) <= 1.0  # instead of 1 + 2 + 4 seconds


def test_checksum_mismatch_removes_the_part_and_installs_nothing(tmp_path: Path) -> None:
    destination = tmp_path / "data.bin"
    wrong = Checksum("sha256", "0" * 64)
    with FileServer({"data.bin": PAYLOAD}) as server:
        with pytest.raises(ChecksumError, match="data.bin.*sha256") as caught:
            fetch(server.url("data.bin"), destination, wrong)
    message = str(caught.value)
    # The message names the URL and the file the learner knows, not the deleted .part.
    assert server.url("data.bin") in message and str(destination) in message
    assert ".part" not in message and "local copy" not in message
    assert not destination.exists()
    assert not partial_path(destination).exists()


def test_local_copy_with_the_wrong_checksum_names_it_and_the_fix(tmp_path: Path) -> None:
    copy = tmp_path / "usb stick" / "data.bin"
    copy.parent.mkdir()
    copy.write_bytes(b"not it")
    with pytest.raises(ChecksumError, match="copy or download that file again") as caught:
        GOOD.verify(copy)
    assert str(caught.value).startswith(f"{copy} is not the expected file")


def test_unverified_earlier_download_is_reused_with_a_note_and_refreshed_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    destination = tmp_path / "mirror-copy.zip"
    destination.write_bytes(b"an old, maybe broken download")
    with FileServer({"mirror-copy.zip": PAYLOAD}) as server:
        fetch(server.url("mirror-copy.zip"), destination, checksum=None)
        assert destination.read_bytes() == b"an old, maybe broken download"
        assert "not verified" in capsys.readouterr().out
        assert server.requests == []
        fetch(server.url("mirror-copy.zip"), destination, checksum=None, refresh_unverified=True)
    assert destination.read_bytes() == PAYLOAD


def test_a_download_in_progress_elsewhere_is_not_touched(tmp_path: Path) -> None:
    destination = tmp_path / "data.bin"
    partial_path(destination).write_bytes(PAYLOAD[:1000])  # the other run's bytes so far
    other_run = try_lock(destination.with_name("data.bin.lock"))
    try:
        with FileServer({"data.bin": PAYLOAD}) as server:
            with pytest.raises(DownloadError, match="Another command is downloading data.bin"):
                fetch(server.url("data.bin"), destination)
        assert server.requests == []
        assert partial_path(destination).read_bytes() == PAYLOAD[:1000]
    finally:
        other_run.release()
    with FileServer({"data.bin": PAYLOAD}) as server:
        assert fetch(server.url("data.bin"), destination).read_bytes() == PAYLOAD  # lock gone


def test_progress_bar_is_drawn_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FileServer({"data.bin": PAYLOAD}) as server:
        download_file(server.url("data.bin"), tmp_path / "data.bin", GOOD, progress=True)
    captured = capsys.readouterr()
    final_state = captured.err.split("\r")[-1]
    assert final_state.startswith("data.bin: 100%")
    assert "195k/195k" in final_state  # 200,000 bytes in KiB, as the total was known
    assert captured.out == ""


def test_existing_good_file_is_not_downloaded_again(tmp_path: Path) -> None:
    destination = tmp_path / "data.bin"
    destination.write_bytes(PAYLOAD)
    assert fetch(UNREACHABLE_URL + "data.bin", destination) == destination


def test_existing_damaged_file_is_replaced(tmp_path: Path) -> None:
    destination = tmp_path / "data.bin"
    destination.write_bytes(b"damaged")
    with FileServer({"data.bin": PAYLOAD}) as server:
        fetch(server.url("data.bin"), destination)
    assert destination.read_bytes() == PAYLOAD


def test_checksum_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD)
    assert Checksum("md5", hashlib.md5(PAYLOAD).hexdigest()).matches(path)
    assert Checksum("sha384", hashlib.sha384(PAYLOAD).hexdigest().upper()).matches(path)
    assert not Checksum("md5", "0" * 32).matches(path)


# ---- extraction -------------------------------------------------------------------------


def test_zip_member_escaping_the_target_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("data/ok.txt", "fine")
        bundle.writestr("../evil.txt", "gotcha")
    target = tmp_path / "out" / "inner"
    with pytest.raises(UnsafeArchiveError, match=r"\.\./evil\.txt"):
        extract_archive(archive, target)
    assert not (tmp_path / "out" / "evil.txt").exists()
    assert not (target / "data" / "ok.txt").exists()  # nothing at all was extracted


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    link = zipfile.ZipInfo("data/link")
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract_archive(archive, tmp_path / "out")


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (tar_member("/tmp/absolute_evil.txt"), "outside"),
        (tar_member("data/../../evil.txt"), "outside"),
        (tar_member("data/link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
        (tar_member("data/escape", tarfile.SYMTYPE, "../../outside"), "link"),
        (tar_member("data/hard", tarfile.LNKTYPE, "/etc/passwd"), "link"),
        (tar_member("data/fifo", tarfile.FIFOTYPE), "special file"),
    ],
    ids=["absolute", "dotdot", "symlink", "relative-symlink", "hardlink", "fifo"],
)
def test_unsafe_tar_members_are_refused(
    tmp_path: Path, member: tarfile.TarInfo, message: str
) -> None:
    archive = tar_with_members(tmp_path / "evil.tgz", [tar_member("data/ok.txt"), member])
    target = tmp_path / "a" / "b" / "out"
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_archive(archive, target)
    assert not (target / "data" / "ok.txt").exists()
    assert not (tmp_path / "a" / "evil.txt").exists()


def test_safe_tar_and_zip_are_extracted(tmp_path: Path) -> None:
    tar = tar_with_members(tmp_path / "ok.tgz", [tar_member("top/a.txt")])
    extract_archive(tar, tmp_path / "from_tar")
    assert (tmp_path / "from_tar" / "top" / "a.txt").read_bytes() == b"x"
    archive = tmp_path / "ok.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("top/b.txt", "b")
    extract_archive(archive, tmp_path / "from_zip")
    assert (tmp_path / "from_zip" / "top" / "b.txt").read_text() == "b"


@pytest.fixture
def tarfile_without_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    """tarfile as in Python 3.11.0-3.11.3: no data_filter, and extractall takes no filter."""
    trust_everything = tarfile.fully_trusted_filter  # what extractall then did
    original = tarfile.TarFile.extractall

    def extractall(
        self: tarfile.TarFile, path: Path, members: list, *, numeric_owner: bool = False
    ) -> None:
        original(self, path, members, numeric_owner=numeric_owner, filter=trust_everything)

    monkeypatch.delattr(tarfile, "data_filter")
    monkeypatch.setattr(tarfile.TarFile, "extractall", extractall)


@pytest.mark.usefixtures("tarfile_without_filters")
def test_tar_is_extracted_without_the_data_filter_of_newer_pythons(tmp_path: Path) -> None:
    setuid_file = tar_member("top/run.sh")
    setuid_file.mode = 0o4777
    setuid_file.uid, setuid_file.uname = 4321, "somebody"
    archive = tar_with_members(tmp_path / "ok.tgz", [tar_member("top/a.txt"), setuid_file])
    extract_archive(archive, tmp_path / "out")
    extracted = tmp_path / "out" / "top" / "run.sh"
    assert extracted.read_bytes() == b"x"
    assert stat.S_IMODE(extracted.stat().st_mode) == 0o755  # no setuid, no world write
    assert extracted.stat().st_uid == os.getuid()  # the archive's owner is not applied
    evil = tar_with_members(tmp_path / "evil.tgz", [tar_member("../evil.txt")])
    with pytest.raises(UnsafeArchiveError):
        extract_archive(evil, tmp_path / "out2")
    assert not (tmp_path / "evil.txt").exists()


def test_escaping_member_message_uses_the_given_name_for_the_target(tmp_path: Path) -> None:
    evil = tar_with_members(tmp_path / "evil.tgz", [tar_member("../evil.txt")])
    with pytest.raises(UnsafeArchiveError, match="outside the data folder X\\. ") as caught:
        extract_archive(evil, tmp_path / "scratch", shown_as="the data folder X")
    assert str(tmp_path / "scratch") not in str(caught.value)


def test_not_an_archive_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.zip"
    bogus.write_text("just text")
    with pytest.raises(DataScriptError, match="neither a zip nor a tar"):
        extract_archive(bogus, tmp_path / "out")
