"""The client's tar reader against archives written by ``tarfile`` in every format it writes,
and the API's bundle headers against ``tarfile``'s reading."""

from __future__ import annotations

import io
import tarfile

import pytest

from service import tar_stream
from service.api.bundles import _header, _padding

NAMES = ["heatmap.npy", "overlay.12.png", "deep/" * 30 + "long.png", "naïve.npy", "x" * 99]


def archive(fmt: int, names: list[str] = NAMES) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        folder = tarfile.TarInfo("folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        link = tarfile.TarInfo("link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "heatmap.npy"
        tar.addfile(link)
        for i, name in enumerate(names):
            data = bytes(range(256)) * i + b"end" * (i + 1)  # sizes on and off block limits
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def expected(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_members_are_those_tarfile_reads(fmt) -> None:
    names = NAMES if fmt != tarfile.USTAR_FORMAT else [n for n in NAMES if n.isascii()]
    data = archive(fmt, names)
    found = list(tar_stream.members(io.BytesIO(data)))
    assert found == expected(data)
    assert [name for name, _ in found] == names  # directories and links skipped


def test_a_stream_read_in_small_pieces_gives_the_same_members() -> None:
    class Trickle(io.BytesIO):
        def read(self, size: int = -1) -> bytes:
            return super().read(min(size, 7) if size and size > 0 else 7)

    data = archive(tarfile.PAX_FORMAT)
    assert list(tar_stream.members(Trickle(data))) == expected(data)


def test_a_corrupt_header_or_a_cut_stream_is_a_read_error() -> None:
    data = bytearray(archive(tarfile.PAX_FORMAT))
    cut = bytes(data[:len(data) // 2])
    with pytest.raises(tarfile.ReadError):
        list(tar_stream.members(io.BytesIO(cut)))
    data[3] ^= 0x01  # a byte of the first name: the checksum no longer matches
    with pytest.raises(tarfile.ReadError, match="checksum"):
        list(tar_stream.members(io.BytesIO(bytes(data))))


def test_the_bundles_headers_read_back_through_tarfile() -> None:
    buf = io.BytesIO()
    written = [(name, name.encode() * 3) for name in NAMES]
    for name, data in written:
        buf.write(_header(name, len(data), 1796161398.6) + data + _padding(len(data)))
    buf.write(b"\0" * 1024)
    assert expected(buf.getvalue()) == written
    assert list(tar_stream.members(io.BytesIO(buf.getvalue()))) == written
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue()), mode="r:") as tar:
        first = tar.getmembers()[0]
        assert (first.mtime, first.mode, first.size) == (1796161398, 0o644, 33)
    info = tarfile.TarInfo("heatmap.npy")  # a short ASCII name: tarfile's own ustar block
    info.size, info.mtime, info.mode = 1000, 1796161398, 0o644
    assert _header("heatmap.npy", 1000, 1796161398.6) == info.tobuf(format=tarfile.USTAR_FORMAT)


def pax_then_member(record: bytes) -> bytes:
    """A tar of a PAX extended header holding ``record``, then member ``a.png`` (``x``)."""
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(record)
    member = tarfile.TarInfo("a.png")
    member.size = 1
    return (pax.tobuf(format=tarfile.USTAR_FORMAT) + record + b"\0" * (-len(record) % 512)
            + member.tobuf(format=tarfile.USTAR_FORMAT) + b"x" + b"\0" * 511 + b"\0" * 1024)


@pytest.mark.parametrize("record", [b"0 path=x\n", b"zz path=x\n", b"99 path=x\n"])
def test_a_bad_pax_record_is_a_read_error(record) -> None:
    """A PAX header whose record length is zero, not a number, or past its data."""
    data = pax_then_member(record)
    with pytest.raises(tarfile.ReadError, match="PAX"):
        list(tar_stream.members(io.BytesIO(data)))


@pytest.mark.parametrize("size", [b"-0000000001", b"0000000zz00"])
def test_a_bad_size_is_a_read_error(size) -> None:
    info = tarfile.TarInfo("a.png")
    head = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    head[124:135] = size
    head[148:156] = b" " * 8
    head[148:156] = b"%06o\0 " % sum(head)  # a right checksum over the bad field
    with pytest.raises(tarfile.ReadError, match="bad number"):
        list(tar_stream.members(io.BytesIO(bytes(head) + b"\0" * 1536)))


def test_a_gnu_header_keeps_its_name_whatever_its_times() -> None:
    """GNU headers ("ustar  ") keep atime and ctime where ustar has the name's prefix."""
    info = tarfile.TarInfo("a.png")
    info.size = 1
    head = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    assert head[257:265] == b"ustar  \0"
    head[345:357] = b"14756017240\0"  # an atime
    head[148:156] = b" " * 8
    head[148:156] = b"%06o\0 " % sum(head)
    data = bytes(head) + b"x" + b"\0" * 511 + b"\0" * 1024
    assert list(tar_stream.members(io.BytesIO(data))) == [("a.png", b"x")]


def test_a_pax_path_that_is_not_utf8_is_read_not_raised() -> None:
    record = b"15 path=\xff\xfe.png\n"
    data = pax_then_member(record)
    [(name, body)] = list(tar_stream.members(io.BytesIO(data)))
    assert name.encode("utf-8", "surrogateescape") == b"\xff\xfe.png" and body == b"x"
