"""Download with retries, resume and checksums; extract archives without escaping the target.

>>> path = download_file(url, Path("data/.downloads/x.zip"), Checksum("sha256", digest))  # doctest: +SKIP
>>> extract_archive(path, Path("scratch/extracted"))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import http.client
import os
import re
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from tqdm import tqdm

from data_scripts.errors import ChecksumError, DataScriptError, DownloadError, UnsafeArchiveError
from data_scripts.locks import try_lock

CHUNK_BYTES = 1 << 20
USER_AGENT = "course-data/0.1 (+python urllib)"
#: Server answers worth another try; any other HTTP error (404, 403...) will not get better.
RETRYABLE_HTTP_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Failures of the connection itself (URLError covers DNS, refused and unreachable).
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException)
#: A failed name lookup ("Name or service not known") almost always means "offline": it is
#: tried once more (a passing hiccup), not with the full back-off.
NAME_LOOKUP_ATTEMPTS = 2
#: The advice for a local file with the wrong checksum.
LOCAL_COPY_FIX = (
    "Fix: copy or download that file again from a good source, or get it from another mirror."
)


@dataclass(frozen=True)
class Checksum:
    """A pinned digest: ``algorithm`` is a hashlib name ("md5", "sha256", "sha384").

    >>> Checksum("sha256", "ab" * 32).algorithm
    'sha256'
    """

    algorithm: str
    hexdigest: str

    def of(self, path: Path) -> str:
        """The digest of ``path`` with this checksum's algorithm.

        >>> Checksum("md5", "").of(Path("102flowers.tgz"))  # doctest: +SKIP
        '52808999861908f626f3c1f4e79d11fa'
        """
        with path.open("rb") as stream:
            return hashlib.file_digest(stream, self.algorithm).hexdigest()

    def matches(self, path: Path) -> bool:
        """True when ``path`` has exactly this digest.

        >>> Checksum("md5", "52808999861908f626f3c1f4e79d11fa").matches(Path("102flowers.tgz"))  # doctest: +SKIP
        True
        """
        return self.of(path) == self.hexdigest.lower()

    def verify(self, path: Path, fix: str = LOCAL_COPY_FIX, *, shown_as: str = "") -> None:
        """Raise ``ChecksumError`` naming the file (``shown_as``, else ``path``) and ``fix``.

        >>> Checksum("md5", "0" * 32).verify(Path("/mnt/usb/x.zip"))  # doctest: +SKIP
        Traceback (most recent call last): ChecksumError: /mnt/usb/x.zip is not the expected ...
        """
        actual = self.of(path)
        if actual != self.hexdigest.lower():
            raise ChecksumError(
                f"{shown_as or path} is not the expected file: its {self.algorithm} is "
                f"{actual}, expected {self.hexdigest}. It is damaged, incomplete or a different "
                f"version. {fix} Nothing was installed."
            )


def partial_path(destination: Path) -> Path:
    """Where an unfinished download of ``destination`` is kept (and resumed from).

    >>> partial_path(Path("data/.downloads/hymenoptera_data.zip")).name
    'hymenoptera_data.zip.part'
    """
    return destination.with_name(destination.name + ".part")


def download_file(
    url: str,
    destination: Path,
    checksum: Checksum | None = None,
    *,
    advice: str = "",
    refresh_unverified: bool = False,
    attempts: int = 4,
    backoff_seconds: float = 1.0,
    timeout_seconds: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``destination``, resuming a ``.part`` file, retrying, verifying.

    ``destination`` appears only once the whole file is there and matches ``checksum``.
    A file already there is kept if it matches; without a checksum to vouch for it, it is
    kept (saying so) unless ``refresh_unverified``. ``advice`` ends the message of a failure.

    >>> download_file("https://example.org/a.zip", Path("a.zip"), progress=False)  # doctest: +SKIP
    PosixPath('a.zip')
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    lock = destination.with_name(destination.name + ".lock")
    held = try_lock(lock)
    if held is None:
        raise DownloadError(
            f"Another command is downloading {destination.name} into {destination.parent} "
            "right now. Fix: wait until it has finished, then run this command again (it "
            "will use that download)."
        )
    try:
        if _reusable(destination, checksum, refresh_unverified):
            return destination
        part = partial_path(destination)
        _fetch_with_retries(url, part, attempts, backoff_seconds, timeout_seconds, progress, advice)
        if checksum is not None:
            try:
                checksum.verify(
                    part,
                    "It was deleted, so the next try downloads it afresh. Fix: run the command "
                    "again; if this happens again, that server has another version of the file: "
                    "get it from another mirror.",
                    shown_as=f"The file downloaded from {url} (for {destination})",
                )
            except ChecksumError:
                part.unlink()  # a wrong file must not be resumed from or mistaken for a good one
                raise
        os.replace(part, destination)
        return destination
    finally:
        held.release()


def _reusable(destination: Path, checksum: Checksum | None, refresh_unverified: bool) -> bool:
    if not destination.is_file():
        return False
    if checksum is not None:
        return checksum.matches(destination)
    if refresh_unverified:
        return False
    print(
        f"Using the earlier download {destination}: no checksum is known for it, so it is "
        "not verified. Use --force to download it again."
    )
    return True


def _fetch_with_retries(
    url: str,
    part: Path,
    attempts: int,
    backoff_seconds: float,
    timeout_seconds: float,
    progress: bool,
    advice: str,
) -> None:
    for attempt in range(1, attempts + 1):
        try:
            _fetch(url, part, timeout_seconds, progress)
            return
        except urllib.error.HTTPError as error:
            if error.code not in RETRYABLE_HTTP_CODES:
                raise DownloadError(
                    f"Could not download {url}: the server answered HTTP {error.code} "
                    f"({error.reason}). Check the address. {advice}".strip()
                ) from error
            failure: Exception = error
        except NETWORK_ERRORS as error:
            failure = error
        allowed = min(attempts, NAME_LOOKUP_ATTEMPTS) if _is_name_lookup(failure) else attempts
        if attempt >= allowed:
            break
        wait = backoff_seconds * 2 ** (attempt - 1)
        print(
            f"Download of {url} failed ({_reason(failure)}); retrying in {wait:.0f}s "
            f"(attempt {attempt + 1} of {allowed}). What arrived so far is kept.",
            file=sys.stderr,
        )
        time.sleep(wait)
    tries = f"{attempt} attempts" if attempt > 1 else "1 attempt"
    raise DownloadError(
        f"Could not download {url} after {tries}: {_reason(failure)}. "
        "This computer seems to be offline, or the server cannot be reached from here. "
        f"{advice}".strip()
    ) from failure


def _is_name_lookup(error: Exception) -> bool:
    """True for a failed DNS lookup, which urllib wraps in a URLError."""
    return isinstance(getattr(error, "reason", error), socket.gaierror)


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _fetch(url: str, part: Path, timeout_seconds: float, progress: bool) -> None:
    """One attempt: continue ``part`` from its current size with an HTTP Range request."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout_seconds
        )
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise
        # "Range not satisfiable": the .part is already whole, or longer than the file.
        if _total_from_content_range(error.headers.get("Content-Range")) == offset:
            return
        part.unlink()
        _fetch(url, part, timeout_seconds, progress)
        return
    with response:
        # 206 = the rest of the file as asked; 200 = the server ignored Range: whole file again.
        resumed = response.status == 206
        if resumed and _start_from_content_range(response.headers.get("Content-Range")) != offset:
            part.unlink(missing_ok=True)
            raise ConnectionError("the server sent another part of the file than asked for")
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        _copy_stream(response, part, "ab" if resumed else "wb", start, total, progress)
    received = part.stat().st_size
    if total is not None and received < total:
        raise ConnectionError(f"connection closed after {received} of {total} bytes")


def _copy_stream(
    response: IO[bytes], part: Path, mode: str, start: int, total: int | None, progress: bool
) -> None:
    label = part.name.removesuffix(".part")
    with (
        part.open(mode) as out,
        tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            disable=not progress,
        ) as bar,
    ):
        while chunk := response.read(CHUNK_BYTES):
            out.write(chunk)
            bar.update(len(chunk))


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+|\*)(?:-\d+)?/(\d+|\*)")


def _start_from_content_range(value: str | None) -> int | None:
    match = _CONTENT_RANGE.match(value or "")
    return int(match.group(1)) if match and match.group(1) != "*" else None


def _total_from_content_range(value: str | None) -> int | None:
    match = _CONTENT_RANGE.match(value or "")
    return int(match.group(2)) if match and match.group(2) != "*" else None


#: What zipfile, tarfile and gzip raise for an archive that is cut short or damaged.
_DAMAGED_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
)


def extract_archive(archive: Path, destination: Path, *, shown_as: str = "") -> None:
    """Extract a zip or tar archive into ``destination``, refusing unsafe members.

    A member whose path would land outside ``destination`` (``../x``, ``/etc/x``), and
    any link or device in a tar, stops the extraction before a single file is written;
    the message calls ``destination`` ``shown_as`` when given (a scratch folder's name
    means nothing to a learner). A damaged or cut-short archive raises a DataScriptError.

    >>> extract_archive(Path("hymenoptera_data.zip"), Path("scratch/extracted"))  # doctest: +SKIP
    """
    destination.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, destination, shown_as or str(destination))
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, destination, shown_as or str(destination))
        else:
            raise DataScriptError(
                f"{archive} is neither a zip nor a tar archive (.zip, .tar, .tgz, .tar.gz) that "
                "can be read: it is damaged or incomplete (an interrupted download or copy), "
                "or another kind of file. Fix: get the archive again, or pass the folder it "
                "extracts to."
            )
    except _DAMAGED_ARCHIVE_ERRORS as error:
        raise DataScriptError(
            f"{archive} is damaged or incomplete ({type(error).__name__}: {error}), as an "
            "interrupted download or copy leaves it. Fix: get the archive again. Nothing was "
            "installed."
        ) from error


def _check_member_path(archive: Path, name: str, destination: Path, shown_as: str) -> None:
    escapes = PurePosixPath(name).is_absolute() or re.match(r"^[A-Za-z]:|^[\\/]", name)
    root = destination.resolve()
    if escapes or not (root / name).resolve().is_relative_to(root):
        raise UnsafeArchiveError(
            f"Refusing to extract {archive}: its member {name!r} would be written outside "
            f"{shown_as}. The archive is damaged or malicious; nothing was extracted. "
            "Fix: get the archive again from the official source."
        )


def _extract_zip(archive: Path, destination: Path, shown_as: str) -> None:
    with zipfile.ZipFile(archive) as bundle:
        members = bundle.infolist()
        for member in members:
            _check_member_path(archive, member.filename, destination, shown_as)
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise UnsafeArchiveError(
                    f"Refusing to extract {archive}: its member {member.filename!r} is a "
                    "symbolic link. Dataset archives hold plain files only; nothing was extracted."
                )
        bundle.extractall(destination, members)


def _extract_tar(archive: Path, destination: Path, shown_as: str) -> None:
    with tarfile.open(archive) as bundle:
        members = bundle.getmembers()
        for member in members:
            _check_member_path(archive, member.name, destination, shown_as)
            if not (member.isfile() or member.isdir()):
                kind = "link" if member.issym() or member.islnk() else "special file"
                raise UnsafeArchiveError(
                    f"Refusing to extract {archive}: its member {member.name!r} is a {kind}. "
                    "Dataset archives hold plain files only; nothing was extracted."
                )
        if hasattr(tarfile, "data_filter"):
            # The "data" filter re-checks every member while extracting (defence in depth).
            bundle.extractall(destination, members, filter="data")
        else:  # Python < 3.11.4: the checks above keep the files in; drop owners and modes
            bundle.extractall(destination, [_plain_file(member) for member in members])


def _plain_file(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """A checked member without what the "data" filter drops: owner, setuid and write bits."""
    plain = copy.copy(member)
    plain.uid = plain.gid = -1  # chown(path, -1, -1) leaves the extracting user as owner
    plain.uname = plain.gname = ""
    plain.mode = 0o755 if member.isdir() else (member.mode & 0o755) | 0o600
    return plain
