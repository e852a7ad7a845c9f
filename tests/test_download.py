"""`fkd download-data` against a real HTTP server on 127.0.0.1 serving a synthetic archive."""

import hashlib
import http.server
import io
import json
import socket
import stat
import threading
import zipfile
from pathlib import Path

import pytest

from fkd_cli.download import fetch_dataset
from fkd_cli.errors import FkdError

from .helpers import invoke, make_dataset, one_line_error


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> bytes:
    return _zip_folder(make_dataset(tmp_path_factory.mktemp("src"), n_train=6, n_test=3))


class Server:
    """A threaded http.server with switchable Range support and a one-shot mid-transfer cut."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.range_support, self.cut_next_at = files, True, None
        self.bytes_served = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                header = self.headers.get("Range")
                if header and server.range_support:
                    start = int(header.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if server.cut_next_at is not None:
                    payload = payload[: server.cut_next_at]
                    server.cut_next_at = None
                    self.wfile.write(payload)
                    server.bytes_served += len(payload)
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # drop the connection mid-transfer
                    return
                self.wfile.write(payload)
                server.bytes_served += len(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(archive):
    s = Server({"/data.zip": archive})
    yield s
    s.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_then_nothing_to_do(server, archive, tmp_path):
    dest = tmp_path / "data"
    result = invoke("download-data", "--dest", dest, "--url", f"{server.url}/data.zip", "--sha256", _sha(archive))
    assert result.exit_code == 0, result.output
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["sha256"] == _sha(archive) and manifest["splits"]["training"] == {"images": 6, "rows": 6}
    assert not (dest / ".partial").exists()
    assert server.bytes_served == len(archive)
    again = invoke("download-data", "--dest", dest, "--url", f"{server.url}/data.zip")
    assert again.exit_code == 0 and "already complete" in again.output
    assert server.bytes_served == len(archive)  # nothing downloaded the second time
    invoke("download-data", "--dest", dest, "--url", f"{server.url}/data.zip", "--force")
    assert server.bytes_served == 2 * len(archive)


def test_resume_after_cut_transfers_only_the_rest(server, archive, tmp_path):
    dest = tmp_path / "data"
    half = len(archive) // 2
    server.cut_next_at = half
    with pytest.raises(FkdError, match="run again to resume"):
        fetch_dataset(dest, url=f"{server.url}/data.zip", retries=0)
    assert (dest / ".partial" / "data.zip").stat().st_size == half
    assert not (dest / "manifest.json").exists()
    result = fetch_dataset(dest, url=f"{server.url}/data.zip", sha256=_sha(archive))
    assert result.bytes_downloaded == len(archive) - half
    assert server.bytes_served == len(archive)  # the second run sent only the rest
    assert (dest / "training").is_dir()


def test_retry_in_the_same_run_resumes(server, archive, tmp_path):
    server.cut_next_at = 1000
    result = fetch_dataset(tmp_path / "d", url=f"{server.url}/data.zip", sha256=_sha(archive), retries=2)
    assert result.bytes_downloaded == len(archive) and server.bytes_served == len(archive)


def test_server_without_range_restarts(server, archive, tmp_path):
    dest = tmp_path / "data"
    server.cut_next_at = 500
    server.range_support = False
    with pytest.raises(FkdError):
        fetch_dataset(dest, url=f"{server.url}/data.zip", retries=0)
    result = fetch_dataset(dest, url=f"{server.url}/data.zip", sha256=_sha(archive))
    assert result.bytes_downloaded == len(archive)


def test_checksum_mismatch_removes_the_file(server, tmp_path):
    dest = tmp_path / "data"
    text = one_line_error(invoke("download-data", "--dest", dest, "--url", f"{server.url}/data.zip", "--sha256", "0" * 64))
    assert "SHA-256 mismatch" in text
    assert not list((dest / ".partial").glob("*")) and not (dest / "training").exists()


def test_http_404_and_connection_refused(server, tmp_path):
    text = one_line_error(invoke("download-data", "--dest", tmp_path / "d", "--url", f"{server.url}/missing.zip"))
    assert "HTTP 404" in text and len(text.splitlines()) == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text = one_line_error(invoke("download-data", "--dest", tmp_path / "d", "--url", f"http://127.0.0.1:{port}/x.zip"))
    assert "connection refused" in text and "--from" in text


def test_truncated_zip_is_refused_and_old_copy_kept(server, archive, tmp_path):
    dest = tmp_path / "data"
    assert fetch_dataset(dest, url=f"{server.url}/data.zip").manifest
    before = (dest / "manifest.json").read_text()
    server.files["/trunc.zip"] = archive[: len(archive) * 2 // 3]
    text = one_line_error(invoke("download-data", "--dest", dest, "--url", f"{server.url}/trunc.zip", "--force"))
    assert "corrupt" in text or "not a valid zip" in text
    assert (dest / "manifest.json").read_text() == before  # the old complete copy is untouched
    assert len(list((dest / "training").iterdir())) == 6


def _evil_zip(path: Path, entry: zipfile.ZipInfo | str, data: bytes = b"x") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(entry, data)
    return path


def test_zip_slip_is_refused(tmp_path):
    evil = _evil_zip(tmp_path / "slip.zip", "../evil")
    text = one_line_error(invoke("download-data", "--dest", tmp_path / "sub" / "data", "--from", evil))
    assert "outside" in text
    assert not (tmp_path / "sub" / "evil").exists() and not (tmp_path / "evil").exists()


def test_symlink_entry_is_refused(tmp_path):
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    evil = _evil_zip(tmp_path / "link.zip", info, b"/etc/passwd")
    text = one_line_error(invoke("download-data", "--dest", tmp_path / "data", "--from", evil))
    assert "symbolic link" in text and not (tmp_path / "data").exists()


def test_zip_bomb_is_refused(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", b"\0" * (50 << 20))
    text = one_line_error(invoke("download-data", "--dest", tmp_path / "data", "--from", bomb))
    assert "zip bomb" in text and not (tmp_path / "data").exists()


def test_from_zip_and_from_folder(archive, tmp_path):
    zipped = tmp_path / "a.zip"
    zipped.write_bytes(archive)
    assert invoke("download-data", "--dest", tmp_path / "z", "--from", zipped).exit_code == 0
    assert (tmp_path / "z" / "test_frames_keypoints.csv").is_file()
    folder = make_dataset(tmp_path / "plain", n_train=3, n_test=2)
    result = invoke("download-data", "--dest", tmp_path / "f", "--from", folder)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "f" / "manifest.json").read_text())["splits"]["test"]["rows"] == 2
    url = (tmp_path / "a.zip").resolve().as_uri()
    assert invoke("download-data", "--dest", tmp_path / "u", "--url", url).exit_code == 0


def test_archive_without_the_layout_is_refused(tmp_path):
    not_data = _evil_zip(tmp_path / "x.zip", "readme.txt", b"hello")
    text = one_line_error(invoke("download-data", "--dest", tmp_path / "d", "--from", not_data))
    assert "training_frames_keypoints.csv" in text and not (tmp_path / "d").exists()


def test_unwritable_dest_and_disk_full(tmp_path, archive, monkeypatch):
    """Both end in one line naming the place; simulated, since root (as in CI) ignores permissions."""
    import errno

    from fkd_cli import download

    zipped = tmp_path / "a.zip"
    zipped.write_bytes(archive)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(download.tempfile, "mkdtemp", denied)
    text = one_line_error(invoke("download-data", "--dest", tmp_path / "ro" / "data", "--from", zipped))
    assert "not writable" in text and "--dest" in text
    monkeypatch.undo()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download, "safe_extract", full)
    text = one_line_error(invoke("download-data", "--dest", tmp_path / "data", "--from", zipped))
    assert "disk full" in text and not (tmp_path / "data").exists()


# ---- DEST is replaced only when it is ours (issue: a user's folder was deleted) ------------------


def test_a_users_folder_is_never_touched(archive, tmp_path):
    zipped = tmp_path / "a.zip"
    zipped.write_bytes(archive)
    dest = tmp_path / "thesis"
    (dest / "sub").mkdir(parents=True)
    (dest / "thesis.txt").write_text("years of work")
    (dest / "sub" / "keep.txt").write_text("keep")
    mode = stat.S_IMODE(dest.stat().st_mode)
    for extra in ([], ["--force"]):
        text = one_line_error(invoke("download-data", "--dest", dest, "--from", zipped, *extra))
        assert str(dest) in text and "not write" in text
        assert (dest / "thesis.txt").read_text() == "years of work"
        assert (dest / "sub" / "keep.txt").read_text() == "keep"
        assert stat.S_IMODE(dest.stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "thesis"]  # no staging left behind


def test_a_plain_file_as_dest_is_an_error(archive, tmp_path):
    zipped = tmp_path / "a.zip"
    zipped.write_bytes(archive)
    plain = tmp_path / "notes"
    plain.write_text("mine")
    text = one_line_error(invoke("download-data", "--dest", plain, "--from", zipped))
    assert "not a folder" in text
    assert plain.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "notes"]


def test_empty_missing_and_previous_fkd_folders_are_replaced(archive, tmp_path):
    zipped = tmp_path / "a.zip"
    zipped.write_bytes(archive)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke("download-data", "--dest", empty, "--from", zipped).exit_code == 0
    assert (empty / "manifest.json").is_file()
    # the data is readable by others, as any folder the user makes (mkdtemp would give 0700)
    assert stat.S_IMODE(empty.stat().st_mode) & 0o055 == 0o055 & ~_umask()
    result = invoke("download-data", "--dest", empty, "--from", zipped, "--force")  # our own folder: replaced
    assert result.exit_code == 0, result.output
    assert json.loads((empty / "manifest.json").read_text())["format"] == "fkd-data"


def test_dest_dot(archive, tmp_path, monkeypatch):
    zipped = tmp_path / "a.zip"
    zipped.write_bytes(archive)
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("x")
    monkeypatch.chdir(work)
    text = one_line_error(invoke("download-data", "--dest", ".", "--from", zipped))
    assert "not write" in text and (work / "mine.txt").read_text() == "x"
    (work / "mine.txt").unlink()
    result = invoke("download-data", "--dest", ".", "--from", zipped)  # an empty current folder is filled
    assert result.exit_code == 0, result.output
    assert (work / "manifest.json").is_file() and Path.cwd() == work.resolve()
    text = one_line_error(invoke("download-data", "--dest", ".", "--from", zipped, "--force"))
    assert "current folder" in text and (work / "manifest.json").is_file()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
