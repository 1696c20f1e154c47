"""Test helpers for data_scripts: tiny image trees, archives, and a local HTTP file server.

Everything stays on this machine: the server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import io
import tarfile
import threading
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

#: A loopback address where nothing listens (the "discard" port): connections are refused.
UNREACHABLE_URL = "http://127.0.0.1:9/"


def write_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> Path:
    """Write a tiny JPEG (or PNG, by suffix) at ``path``, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path


def make_image_tree(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    """Create ``root/<split>/<class>/img_<i>.jpg`` with ``layout[split][class]`` images each."""
    for split, classes in layout.items():
        for class_name, count in classes.items():
            folder = root / split / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                write_image(folder / f"img_{index}.jpg", (index * 20 % 256, 90, 160))
    return root


def hymenoptera_layout(per_class: int = 2) -> dict[str, dict[str, int]]:
    return {split: {"ants": per_class, "bees": per_class} for split in ("train", "val")}


def zip_folder(folder: Path, archive: Path, top: str | None = None) -> Path:
    """Zip every file under ``folder``, inside a top folder ``top`` when given."""
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                bundle.write(path, f"{top}/{name}" if top else name)
    return archive


def tar_folder(folder: Path, archive: Path, top: str | None = None) -> Path:
    """A gzipped tar of ``folder`` (as ``top`` when given)."""
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(folder, arcname=top or ".")
    return archive


def tar_with_members(archive: Path, members: Iterable[tarfile.TarInfo]) -> Path:
    """A tar.gz holding the given hand-made members (files get one byte of content)."""
    with tarfile.open(archive, "w:gz") as bundle:
        for member in members:
            if member.isfile():
                member.size = 1
                bundle.addfile(member, io.BytesIO(b"x"))
            else:
                bundle.addfile(member)
    return archive


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = link
    return member


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: to assert a folder was left untouched."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@dataclass
class FileServer:
    """Serve ``files`` over HTTP on 127.0.0.1 from a thread, with Range support.

    ``script`` lists what to do for the first requests, in order: "503" answers Service
    Unavailable, "truncate" sends the headers of the full answer and half the bytes,
    then hangs up. Later requests are served normally. ``requests`` records each
    request's path and Range header.
    """

    files: dict[str, bytes]
    honour_range: bool = True
    script: list[str] = field(default_factory=list)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    bytes_sent: int = 0

    def __enter__(self) -> FileServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def url(self, name: str = "") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{name}"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                range_header = self.headers.get("Range")
                server.requests.append((self.path, range_header))
                action = server.script.pop(0) if server.script else "serve"
                payload = server.files.get(self.path.lstrip("/"))
                if action == "503":
                    self.send_error(503, "try again later")
                elif payload is None:
                    self.send_error(404, "no such file")
                else:
                    self._serve(payload, range_header, truncate=action == "truncate")

            def _serve(self, payload: bytes, range_header: str | None, truncate: bool) -> None:
                start = 0
                if range_header and server.honour_range:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(payload):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(payload)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header(
                        "Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}"
                    )
                else:
                    self.send_response(200)
                body = payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                sent = body[: len(body) // 2] if truncate else body
                self.wfile.write(sent)
                server.bytes_sent += len(sent)
                if truncate:
                    self.close_connection = True

        return Handler
