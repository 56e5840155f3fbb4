"""tasks/files/metadata.py and its readers on real and generated files, and tasks/files/sandbox.py stopping
parsers that hang, eat memory or crash. No Prefect here: these call the extractor directly."""
import asyncio
import json
import os
import subprocess
import sys
import zipfile

import psutil
import pytest
from PIL import Image

from tasks.files import archives, science
from tasks.files.metadata import extract
from tasks.files.sandbox import Sandbox, stop_idle_children
from tasks.samples import corpus, handmade
from tasks.samples import files as samples


def test_the_machines_own_files_all_get_an_answer():
    """Files nobody here wrote (under /usr/share, in installed packages): always some on Debian."""
    gathered = corpus.gather()
    assert len(gathered) >= 20
    for path in gathered:
        answer = extract(str(path))
        assert answer["status"] in ("ok", "unsupported", "failed") and json.loads(answer["metadata_json"]) is not None
        assert answer["status"] != "failed" or answer["error"], path


def test_formats_exiftool_reads_that_no_installed_tool_writes(tmp_path):
    psd = extract(str(handmade.write_psd(tmp_path / "wide.psd", 120, 40)))
    assert (psd["format"], psd["width"], psd["height"]) == ("psd", 120, 40)  # the header has height first
    acr = extract(str(handmade.write_acr_nema(tmp_path / "IM0001", 12, 20)))
    assert (acr["status"], acr["format"], acr["width"], acr["height"]) == ("ok", "acr-nema", 20, 12)
    jpeg = tmp_path / "frame.jpg"
    Image.new("RGB", (24, 16)).save(jpeg)
    compressed = extract(str(handmade.write_compressed_dicom(tmp_path / "c.dcm", 16, 24, jpeg.read_bytes())))
    assert (compressed["width"], compressed["height"]) == (24, 16)
    svg = extract(str(handmade.write_svg(tmp_path / "a.svg", "4in", "3in")))
    assert (svg["format"], svg["width"], svg["height"], svg["title"]) == ("svg", 384, 288, "Sample drawing")
    box = extract(str(handmade.write_svg(tmp_path / "b.svg", "100%", None, "0 0 640 480")))
    assert (box["width"], box["height"]) == (640, 480)
    fonts = [extract(str(write(tmp_path / f"f.{ext}"))) for ext, write in
             (("pfa", handmade.write_pfa), ("pfb", handmade.write_pfb), ("afm", handmade.write_afm))]
    assert [(f["format"], f["title"]) for f in fonts] == [("pfa", "SampleSans-Regular"), ("pfb", "SampleSerif-Bold"),
                                                          ("afm", "Sample Sans Regular")]
    rifx = extract(str(handmade.write_rifx_wav(tmp_path / "be.wav", 0.8, 22050)))
    assert (rifx["format"], rifx["duration_s"], rifx["sample_rate"]) == ("wav", 0.8, 22050)
    eps = extract(str(handmade.write_dos_eps(tmp_path / "d.eps", 300, 200)))
    assert (eps["format"], eps["width"], eps["height"], eps["title"]) == ("eps", 300, 200, "Boxed")
    big = Image.new("RGBA", (256, 256))
    big.save(tmp_path / "big.ico", sizes=[(256, 256)])
    assert extract(str(tmp_path / "big.ico"))["width"] == 256  # stored as 0 in the directory


def test_weak_signatures_are_never_claimed(tmp_path):
    """NumPy arrays, text with 'G' every 188 bytes, a lone MPEG frame header: no format is claimed
    unless its structure checks out."""
    npy = handmade.write_npy(tmp_path / "a.npy", (40, 40))
    sync = tmp_path / "sync.h"
    sync.write_bytes(b"".join(b"G" + b"/* header line */ ".ljust(187, b"x") for _ in range(30)))
    frame = tmp_path / "frame.bin"
    frame.write_bytes(b"\xff\xfb\x90\x00" + bytes(200) + b"\x89stray bytes")
    webp = tmp_path / "lossy.webp"
    Image.new("RGB", (30, 20), (200, 10, 10)).save(webp, quality=40)
    answers = {path.name: extract(str(path)) for path in (npy, sync, frame, webp)}
    assert answers["a.npy"]["format"] != "mp3" and answers["a.npy"]["mime"] != "audio/mpeg"
    assert answers["sync.h"]["format"] == "txt"
    assert answers["frame.bin"]["status"] == "unsupported"
    assert (answers["lossy.webp"]["format"], answers["lossy.webp"]["width"]) == ("webp", 30)


def test_zip_sizes_come_from_the_central_directory_and_a_huge_archive_is_bounded(tmp_path, monkeypatch):
    streamed = tmp_path / "streamed.jar"
    with zipfile.ZipFile(streamed, "w", zipfile.ZIP_DEFLATED) as out:
        with out.open("META-INF/MANIFEST.MF", "w") as entry:  # written as a stream: sizes in a data descriptor
            entry.write(b"Manifest-Version: 1.0\n" * 3)
    answer = extract(str(streamed))
    listed = json.loads(answer["metadata_json"])
    assert (answer["format"], listed["entries"], listed["first_entries"][0]["size"]) == ("jar", 1, 66)
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as out:
        for n in range(300):
            out.writestr(f"f{n:04d}.txt", b"x" * n)
    monkeypatch.setattr(archives, "MAX_ENTRIES", 100)
    first, again = extract(str(many)), extract(str(many))
    assert first == again and first["error"] == "sizes summed over the first 100 of 300 entries"
    assert json.loads(first["metadata_json"])["uncompressed_size"] == sum(range(100))


def test_unset_dates_are_empty(tmp_path):
    path = samples.write_mp4(tmp_path / "zero.mp4")
    data = path.read_bytes()
    at = data.index(b"mvhd") + 8  # creation time, 0 = 1904-01-01
    path.write_bytes(data[:at] + bytes(4) + data[at + 4:])
    assert extract(str(path))["created"] is None


EXPECTED = {  # generated file -> (format, parser, some of its fields)
    "wav": ("wav", "wav-chunks", {"sample_rate": 8000, "channels": 1, "duration_s": 0.5, "bit_rate": 128000}),
    "png": ("png", "hachoir:PngFile", {"width": 4, "height": 3, "producer": "batchflows tests"}),
    "avi": ("avi", "hachoir:RiffFile", {"width": 64, "height": 48, "duration_s": 2.0, "frame_rate": 25.0}),
    "mp4": ("mp4", "isobmff-boxes", {"width": 320, "height": 240, "duration_s": 2.0, "created": "2024-03-01T10:15:00"}),
    "mkv": ("mkv", "hachoir:MkvFile", {"width": 640, "height": 360, "duration_s": 3.0, "title": "Sample clip",
                                            "codec": "V_MPEG4/ISO/AVC"}),
    "fits": ("fits", "fits-header", {"width": 10, "height": 8, "title": "M31", "created": "2024-03-01T22:10:00",
                                     "author": "A. Astronomer"}),
    "nc": ("netcdf", "netcdf-header", {"title": "sample grid"}),
    "dcm": ("dicom", "dicom-header", {"width": 6, "height": 4, "created": "2024-03-01", "producer": "Acme Imaging"}),
    "pdf": ("pdf", "pypdf", {"page_count": 2, "title": "Sample", "author": "A. Writer", "created": "2024-03-01T10:15:00"}),
    "docx": ("docx", "ooxml-properties", {"title": "Minutes", "author": "A. Writer", "page_count": 3,
                                          "producer": "Microsoft Office Word"}),
    "xlsx": ("xlsx", "ooxml-properties", {"title": "Budget", "author": "A. Writer"}),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_generated_files(tmp_path, kind):
    answer = extract(str(samples.GENERATORS[kind](tmp_path / f"sample.{kind}")))
    fmt, parser, fields = EXPECTED[kind]
    assert (answer["status"], answer["error"], answer["format"], answer["parser"]) == ("ok", "", fmt, parser)
    assert {name: answer[name] for name in fields} == fields


def test_header_readers_keep_what_they_read_and_skip_personal_data(tmp_path):
    netcdf = json.loads(extract(str(samples.write_netcdf(tmp_path / "grid.nc")))["metadata_json"])
    assert netcdf["dimensions"] == {"time": 0, "lat": 3} and netcdf["attributes"]["version"] == 2
    dicom = extract(str(samples.write_dicom(tmp_path / "scan.dcm")))
    assert json.loads(dicom["metadata_json"])["modality"] == "CT"
    assert "Doe" not in json.dumps(dicom)  # the patient's name is in the file, never in the output


def test_a_page_tree_without_a_count_is_counted_page_by_page(tmp_path):
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R 4 0 R 5 0 R] >>",
               *[b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>"] * 3]
    body, offsets = b"%PDF-1.4\n", []
    for number, text in enumerate(objects, 1):
        offsets.append(len(body))
        body += b"%d 0 obj\n%s\nendobj\n" % (number, text)
    table = b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    body += (b"xref\n0 6\n0000000000 65535 f \n%strailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
             % (table, len(body)))
    (tmp_path / "no-count.pdf").write_bytes(body)
    answer = extract(str(tmp_path / "no-count.pdf"))
    assert (answer["status"], answer["page_count"]) == ("ok", 3)


def test_hdf5_with_and_without_h5py(tmp_path, monkeypatch):
    path = samples.write_hdf5(tmp_path / "data.h5", {"title": "run 7", "institution": "lab"})
    if science.h5py is not None:
        with_h5py = extract(str(path))
        assert (with_h5py["parser"], with_h5py["title"], with_h5py["producer"]) == ("hdf5-header+h5py", "run 7", "lab")
        assert json.loads(with_h5py["metadata_json"])["members"] == ["temperature"]
    monkeypatch.setattr(science, "h5py", None)  # as without the hdf5 extra
    plain = extract(str(path))
    assert (plain["status"], plain["format"], plain["parser"]) == ("ok", "hdf5", "hdf5-header")
    assert json.loads(plain["metadata_json"])["superblock_version"] == 0


def test_hostile_files_get_a_status_and_a_reason(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = {
        empty: ("unsupported", "empty file (0 bytes)"),
        samples.write_random(tmp_path / "noise.mp4"): ("unsupported", "unknown format"),
        samples.write_truncated(tmp_path / "cut.fits", samples.write_fits(tmp_path / "whole.fits"), 0.3):
            ("failed", "truncated FITS header (no END card)"),
        samples.write_truncated(tmp_path / "cut.nc", samples.write_netcdf(tmp_path / "whole.nc"), 0.5):
            ("failed", "truncated NetCDF header"),
        tmp_path / "missing.png": ("failed", "No such file or directory"),
    }
    for path, expected in cases.items():
        answer = extract(str(path))
        assert (answer["status"], answer["error"]) == expected, path.name
    cut_png = extract(str(samples.write_truncated(tmp_path / "cut.png", samples.write_png(tmp_path / "whole.png"), 0.6)))
    assert (cut_png["status"], cut_png["width"]) == ("ok", 4)  # what the header had is still read
    cut_pdf = extract(str(samples.write_truncated(tmp_path / "cut.pdf", samples.write_pdf(tmp_path / "whole.pdf"), 0.5)))
    assert cut_pdf["status"] == "failed" and cut_pdf["error"].startswith("PdfStreamError")
    cut_mkv = extract(str(samples.write_truncated(tmp_path / "cut.mkv", samples.write_mkv(tmp_path / "whole.mkv"), 0.3)))
    assert (cut_mkv["status"], cut_mkv["format"]) == ("ok", "mkv")  # the format is known, and the file cut
    assert cut_mkv["error"].startswith("cut file? the header declares")
    cut_wav = extract(str(samples.write_truncated(tmp_path / "cut.wav", samples.write_wav(tmp_path / "w.wav", 1.0), 0.5)))
    assert (cut_wav["status"], cut_wav["duration_s"]) == ("ok", pytest.approx(0.5, abs=0.01))
    assert cut_wav["error"].startswith("cut file?")
    elf = extract(os.path.realpath(sys.executable))
    assert (elf["status"], elf["format"], elf["error"]) == ("ok", "elf", "")  # no metadata, and that is fine


@pytest.fixture(autouse=True)
def no_pooled_children():
    stop_idle_children()  # each test counts the children it starts
    yield
    stop_idle_children()


def call_all(spec: Sandbox, *calls: tuple, size: int = 1) -> list:
    async def run():
        async with spec.client(size, "") as client:
            return [await client.call(*args) for args in calls]
    return asyncio.run(run())


def parser_processes() -> set[int]:
    return {p.pid for p in psutil.Process().children() if "tasks.files.sandbox_child" in p.cmdline()}


def test_a_parser_that_loops_is_killed_and_replaced(tmp_path):
    looping = samples.write_looping_jpeg(tmp_path / "loop.jpg")
    png = samples.write_png(tmp_path / "ok.png")

    async def run():
        async with Sandbox("tasks.files.metadata:extract", timeout=1.0).client(1, "") as client:
            first = await client.call(str(png))
            child = parser_processes()
            hung = await client.call(str(looping))
            after = await client.call(str(png))
            return first, child, hung, after, parser_processes()

    first, before, hung, after, now = asyncio.run(run())
    assert first.value["status"] == after.value["status"] == "ok"
    assert (hung.problem, hung.error) == ("timeout", "no answer within 1 s: the parser was killed")
    assert 990 <= hung.elapsed_ms < 3000  # uvloop timers may fire a little early
    assert len(before) == 1 and not any(psutil.pid_exists(pid) for pid in before)  # the looping child is gone
    assert len(now) == 1 and now.isdisjoint(before)


def test_a_runaway_parse_hits_the_memory_cap(tmp_path):
    looping = samples.write_looping_jpeg(tmp_path / "loop.jpg")  # hachoir allocates ~40 MB/s on it
    answers = call_all(Sandbox("tasks.files.metadata:extract", timeout=60, memory_mb=160),
                       (str(looping),), (str(samples.write_wav(tmp_path / "a.wav")),))
    assert (answers[0].problem, answers[0].error) == ("memory", "memory cap of 160 MB reached")
    assert answers[1].value["status"] == "ok"  # a fresh process took the next file


def test_crashes_and_exceptions_in_the_child_are_answers():
    crashed, = call_all(Sandbox("ctypes:string_at"), (0,))  # reads address 0: a segmentation fault
    assert (crashed.problem, crashed.error) == ("died", "the parser process died (SIGSEGV)")
    error, fine = call_all(Sandbox("json:loads"), ("{",), ("[1]",))
    assert error.problem == "error" and error.error.startswith("JSONDecodeError")
    assert fine.value == [1]
    exited, = call_all(Sandbox("os:_exit"), (3,))
    assert exited.error == "the parser process died (exit code 3)"


def test_a_child_that_cannot_start_stops_the_run():
    from tasks.engine.outcomes import FatalError

    with pytest.raises(FatalError, match="did not start: ModuleNotFoundError"):
        call_all(Sandbox("no_such_module:f"), ("x",))


def test_children_are_reused_by_the_next_chunk_unless_they_died(tmp_path):
    png = str(samples.write_png(tmp_path / "ok.png"))
    spec = Sandbox("tasks.files.metadata:extract")
    first = call_all(spec, (png,))
    pooled = parser_processes()
    second = call_all(spec, (png,))
    assert first[0].value["status"] == second[0].value["status"] == "ok"
    assert len(pooled) == 1 and parser_processes() == pooled  # the same process answered both chunks
    psutil.Process(pooled.pop()).kill()  # dies while it waits in the pool
    third = call_all(spec, (png,))
    assert third[0].value["status"] == "ok" and len(parser_processes()) == 1
    stop_idle_children()
    assert not parser_processes()


def test_calls_queued_behind_a_hang_go_to_a_fresh_child(tmp_path):
    looping = str(samples.write_looping_jpeg(tmp_path / "loop.jpg"))
    files = [str(samples.write_wav(tmp_path / f"{n}.wav")) for n in range(3)]

    async def run():  # four calls at once on one child: the hang first, three queued behind it
        async with Sandbox("tasks.files.metadata:extract", timeout=1.0).client(4, "") as client:
            return await asyncio.gather(*(client.call(path) for path in [looping, *files]))

    hung, *after = asyncio.run(run())
    assert hung.problem == "timeout" and 990 <= hung.elapsed_ms < 3000
    assert [answer.value["status"] for answer in after] == ["ok"] * 3
    assert all(answer.elapsed_ms < 1000 for answer in after)  # the child's time for the file, not the wait


def test_long_calls_queued_behind_a_hang_never_block_the_chunk():
    """Three 100 KB calls behind a regex that backtracks for ever: more than a pipe holds (64 KB)
    waits for a child that does not read; the chunk's loop must still time the hang out."""
    async def run():
        async with Sandbox("re:match", timeout=1.0).client(4, "") as client:
            return await asyncio.gather(client.call("(a+)+$", "a" * 60 + "b"),
                                        *(client.call("x", "y" * 100_000) for _ in range(3)))

    hung, *after = asyncio.run(asyncio.wait_for(run(), 30))
    assert hung.problem == "timeout"
    assert [(answer.problem, answer.value) for answer in after] == [("", None)] * 3


def test_text_in_any_encoding_html_archives_and_binaries_are_named_as_they_are(tmp_path):
    """Text in UTF-16, Windows-1252 and Shift JIS is text; HTML (with an inline SVG) gives its title and
    author; an ar archive is a static library and one starting with debian-binary a Debian package
    (built by dpkg-deb); an ELF shared object is one; bytes without words are not text."""
    answers = {path.name: extract(str(path)) for path in handmade.write_texts(tmp_path)}
    assert {name: (a["format"], json.loads(a["metadata_json"])["encoding"]) for name, a in answers.items()} == {
        "utf16.txt": ("txt", "utf-16-le"), "cp1252.txt": ("txt", "unknown-8bit"),
        "shiftjis.xml": ("xml", "unknown-8bit"), "page.html": ("html", "us-ascii"), "data.json": ("json", "us-ascii"),
        "brace.txt": ("txt", "us-ascii"), "table.csv": ("csv", "us-ascii"), "tool": ("script", "us-ascii"),
        "index.php": ("php", "us-ascii")}
    assert answers["tool"]["mime"] == "text/x-python3"
    assert (answers["page.html"]["title"], answers["page.html"]["author"]) == ("Quarterly report", "Ana Lima")
    stylesheet = tmp_path / "comments.xsl"  # comments before the root: once a regular expression's worst case
    stylesheet.write_text('<?xml version="1.0"?>\n' + "<!-- a note on <html> output -->\n" * 400 + "<xsl:stylesheet/>\n")
    assert extract(str(stylesheet))["format"] == "xml"
    library = extract(str(handmade.write_ar(tmp_path / "libx.a", {"a.o": b"\x7fELF" + bytes(40), "b.o": b"xyz"})))
    assert (library["format"], library["mime"], json.loads(library["metadata_json"])["first_members"]) == \
        ("ar", "application/x-archive", ["a.o", "b.o"])
    package = tmp_path / "pkg"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "DEBIAN" / "control").write_text("Package: sample\nVersion: 1.0\nArchitecture: all\n"
                                                "Maintainer: A <a@example.org>\nDescription: sample\n")
    subprocess.run(["dpkg-deb", "--build", str(package), str(tmp_path / "sample.deb")], check=True, capture_output=True)
    deb = extract(str(tmp_path / "sample.deb"))
    assert (deb["format"], deb["mime"]) == ("deb", "application/vnd.debian.binary-package")
    shared = extract(psutil._psutil_linux.__file__)  # a C extension: an ELF shared object
    assert (shared["format"], shared["mime"]) == ("elf", "application/x-sharedlib")
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(range(128, 256)) * 8)  # high bytes only: no blank, no line break
    assert extract(str(noise))["status"] == "unsupported"
