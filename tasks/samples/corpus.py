"""A corpus for checking the metadata extractor against ExifTool and ffprobe: media that ffmpeg
makes in many containers and codecs, images that Pillow and ffmpeg write, files in formats no tool
here writes (tasks/samples/handmade.py), files the machine already has (under /usr/share, inside
installed packages), and cut copies of some of them.

`build_corpus(root)` writes the generated files under `root` and returns them with the gathered ones.
"""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

from tasks.samples import handmade
from tasks.samples.files import write_dicom, write_truncated

# (file name, ffmpeg output options, after the shape's): each group shares one ffmpeg run and its inputs
AUDIO_OUTPUTS = (
    ("pcm16.wav", "-c:a pcm_s16le"), ("pcm24.wav", "-c:a pcm_s24le"), ("float.wav", "-c:a pcm_f32le"),
    ("rf64.wav", "-c:a pcm_s16le -rf64 always"), ("alaw.wav", "-c:a pcm_alaw"), ("u8.wav", "-c:a pcm_u8"),
    ("pcm.aiff", "-c:a pcm_s16be"), ("pcm.au", "-c:a pcm_s16be"), ("lossless.flac", "-c:a flac"),
    ("cbr.mp3", "-c:a libmp3lame -b:a 128k"), ("vbr.mp3", "-c:a libmp3lame -q:a 5"),
    ("noxing.mp3", "-c:a libmp3lame -b:a 96k -write_xing 0"),
    ("vorbis.ogg", "-c:a libvorbis -q:a 2"), ("voice.opus", "-c:a libopus -b:a 48k -ar 48000"),
    ("aac.m4a", "-c:a aac -b:a 96k"), ("alac.m4a", "-c:a alac"), ("vorbis.mka", "-c:a libvorbis"),
    ("wma.wma", "-c:a wmav2"), ("layer2.mp2", "-c:a mp2"), ("dolby.ac3", "-c:a ac3 -ar 48000"),
)
AUDIO_SHAPES = ((44100, 2, 1.3), (22050, 1, 2.7), (48000, 2, 0.6))  # rate, channels, seconds
VIDEO_OUTPUTS = (
    ("h264.mp4", "-c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    ("h264.mov", "-c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"),
    ("mpeg4.mov", "-c:v mpeg4 -c:a pcm_s16le"),
    ("h263.3gp", "-c:v h263 -s 176x144 -c:a aac -ar 16000 -ac 1"),
    ("h264.mkv", "-c:v libx264 -preset ultrafast -c:a libvorbis"),
    ("vp8.webm", "-c:v libvpx -deadline realtime -cpu-used 8 -b:v 200k -c:a libvorbis"),
    ("vp9.webm", "-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 200k -c:a libopus"),
    ("mpeg4.avi", "-c:v mpeg4 -c:a libmp3lame"), ("theora.ogv", "-c:v libtheora -q:v 5 -c:a libvorbis"),
    ("program.mpg", "-c:v mpeg2video -c:a mp2 -f vob"), ("transport.ts", "-c:v mpeg2video -c:a mp2"),
    ("flash.flv", "-c:v flv -c:a libmp3lame -ar 44100"), ("windows.wmv", "-c:v wmv2 -c:a wmav2"),
    ("mpeg4.m4v", "-c:v mpeg4 -an"),
)
VIDEO_SHAPES = ((160, 120, 25, 1.2, 44100), (96, 64, 30, 2.4, 48000))  # width, height, fps, seconds, audio rate
IMAGE_OUTPUTS = ("png", "bmp", "tiff", "ppm", "pgm", "pbm", "exr", "webp", "jp2", "tga", "sgi", "gif", "jpg",
                 "xwd", "pcx", "dpx")
IMAGE_SHAPES = ((33, 21), (256, 17))
GATHER = {  # extension -> how many of the machine's files to take (sorted by path)
    ".png": 12, ".svg": 12, ".gif": 6, ".jpg": 6, ".ico": 6, ".ttf": 4, ".pdf": 4, ".jar": 3, ".whl": 2,
    ".zip": 3, ".so": 6, ".ps": 3, ".eps": 3, ".npy": 4, ".wav": 4, ".aiff": 2, ".au": 2, ".h": 4, ".conf": 4,
    ".txt": 4, ".xml": 3, ".gz": 3, ".afm": 3, ".pfb": 3, ".tif": 2, ".bmp": 2, ".webp": 2, ".mp3": 2,
    ".html": 4, ".a": 2, ".json": 3, ".csv": 2,
}
GATHER_ROOTS = ("/usr/share", sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"], "/etc")
TOOLS = {"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg", "exiftool": "libimage-exiftool-perl"}


def missing_tools() -> list[str]:
    """The Debian packages to install for the oracle tools that are not on PATH."""
    return sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})


def _ffmpeg(inputs: list[str], outputs: list[tuple[Path, str]]) -> None:
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *inputs]
    for path, options in outputs:
        command += [*options.split(), "-map_metadata", "-1", "-metadata", f"title=Sample {path.stem}",
                    "-metadata", "artist=Batch Flows", str(path)]
    subprocess.run(command, check=True, timeout=120)


def write_media(root: Path) -> list[Path]:
    """Audio and video from ffmpeg's test sources, in every container and shape above."""
    made = []
    for n, (rate, channels, seconds) in enumerate(AUDIO_SHAPES):
        outputs = [(root / f"audio{n}-{name}", f"-ar {rate} -ac {channels} {options}")
                   for name, options in AUDIO_OUTPUTS]
        _ffmpeg(["-f", "lavfi", "-i", f"aevalsrc=0.2*sin(440*2*PI*t)|0.2*sin(660*2*PI*t):s={rate}:d={seconds}"],
                outputs)
        made += [path for path, _ in outputs]
    for n, (width, height, fps, seconds, audio_rate) in enumerate(VIDEO_SHAPES):
        outputs = [(root / f"video{n}-{name}", f"{options} -map 0:v -map 1:a?" if "-an" not in options
                    else f"{options} -map 0:v") for name, options in VIDEO_OUTPUTS]
        _ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}",
                 "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate={audio_rate}:duration={seconds}"], outputs)
        made += [path for path, _ in outputs]
    for n, (width, height) in enumerate(IMAGE_SHAPES):
        outputs = [(root / f"image{n}.{ext}", "-frames:v 1" + (" -pix_fmt rgb24" if ext in ("tga", "sgi") else ""))
                   for ext in IMAGE_OUTPUTS]
        _ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=1"], outputs)
        made += [path for path, _ in outputs]
    return made


def write_pillow_images(root: Path) -> list[Path]:
    """Images Pillow writes, with text fields and variants ffmpeg does not make."""
    from PIL import Image, PngImagePlugin

    made = []
    for n, (width, height) in enumerate(((40, 30), (300, 200))):
        rgb = Image.new("RGB", (width, height), (200, 30, 30))
        rgba = Image.new("RGBA", (width, height), (0, 90, 200, 128))
        text = PngImagePlugin.PngInfo()
        text.add_text("Title", f"Red box {n}")
        text.add_text("Author", "A. Painter")
        saves = {f"text{n}.png": (rgb, {"pnginfo": text}), f"alpha{n}.webp": (rgba, {}),
                 f"lossless{n}.webp": (rgb, {"lossless": True}), f"lossy{n}.webp": (rgb, {"quality": 50}),
                 f"grey{n}.pgm": (rgb.convert("L"), {}), f"bits{n}.pbm": (rgb.convert("1"), {}),
                 f"colour{n}.ppm": (rgb, {}), f"plain{n}.bmp": (rgb, {}), f"alpha{n}.bmp": (rgba, {}),
                 f"page{n}.eps": (rgb, {}), f"icon{n}.ico": (rgba, {"sizes": [(16, 16), (width, width)]}),
                 f"photo{n}.jpg": (rgb, {"quality": 80}), f"scan{n}.tiff": (rgb, {"compression": "tiff_lzw"}),
                 f"anim{n}.gif": (rgb.convert("P"), {}), f"page{n}.pdf": (rgb, {"title": f"Page {n}"}),
                 f"icon{n}.icns": (rgba.resize((32, 32)), {})}
        for name, (image, options) in saves.items():
            image.save(root / name, **options)
            made.append(root / name)
    big = Image.new("RGBA", (256, 256), (10, 200, 10, 255))
    big.save(root / "icon256.ico", sizes=[(16, 16), (48, 48), (256, 256)])
    return [*made, root / "icon256.ico"]


def write_handmade(root: Path) -> list[Path]:
    from PIL import Image

    jpeg = root / "frame.jpg"
    Image.new("RGB", (24, 16), (1, 2, 3)).save(jpeg)
    made = [handmade.write_psd(root / "wide.psd", 120, 40), handmade.write_psd(root / "tall.psd", 30, 90, 4, 16),
            handmade.write_acr_nema(root / "old.acr", 12, 20), handmade.write_acr_nema(root / "IM0001", 64, 48),
            handmade.write_compressed_dicom(root / "jpeg.dcm", 16, 24, jpeg.read_bytes()),
            write_dicom(root / "plain.dcm", 10, 14),
            handmade.write_pfa(root / "sans.pfa"), handmade.write_pfb(root / "serif.pfb"),
            handmade.write_afm(root / "sans.afm"),
            handmade.write_svg(root / "pixels.svg", "120", "80"), handmade.write_svg(root / "units.svg", "4in", "3in"),
            handmade.write_svg(root / "viewbox.svg", None, None, "0 0 640 480"),
            handmade.write_svg(root / "percent.svg", "100%", "100%", "0 0 10 20"),
            handmade.write_rifx_wav(root / "bigendian.wav", 0.8), handmade.write_dos_eps(root / "dos.eps", 300, 200),
            handmade.write_npy(root / "matrix.npy", (3, 4)), handmade.write_npy(root / "cube.npy", (8, 8, 8)),
            handmade.write_ar(root / "libsample.a", {"one.o": b"\x7fELF" + bytes(60), "two.o": b"\x7fELF" + bytes(61)}),
            *handmade.write_texts(root)]
    jpeg.unlink()
    return made


def gather(limits: dict[str, int] = GATHER) -> list[Path]:
    """Regular files of the machine with the given extensions, up to the count each, in path order."""
    found: dict[str, list[Path]] = {ext: [] for ext in limits}
    for top in GATHER_ROOTS:
        for folder, dirs, names in os.walk(top):
            dirs.sort()
            for name in sorted(names):
                ext = os.path.splitext(name)[1].lower()
                path = Path(folder, name)
                if ext in found and len(found[ext]) < limits[ext] and path.is_file() and not path.is_symlink() \
                        and 0 < path.stat().st_size < 50 << 20:
                    found[ext].append(path)
            if all(len(paths) >= limits[ext] for ext, paths in found.items()):
                break
    return sorted(itertools.chain.from_iterable(found.values()))


def cut_copies(root: Path, sources: list[Path], keep: float = 0.4) -> list[Path]:
    """Copies of `sources` cut to `keep` of their size (named cut-*), as a damaged download would be."""
    return [write_truncated(root / f"cut-{source.name}", source, keep) for source in sources]


def build_corpus(root: Path) -> list[Path]:
    """Generated and gathered files; the generated ones are written under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    made = write_media(root) + write_pillow_images(root) + write_handmade(root)
    to_cut = [p for p in made if p.name.startswith(("audio0-", "video0-"))
              and p.suffix in (".wav", ".ogg", ".mp4", ".mkv", ".flac", ".m4a", ".avi", ".opus")]
    to_cut += [p for p in made if p.name in ("photo1.jpg", "text1.png", "alpha1.webp", "plain1.bmp")]
    return made + cut_copies(root, to_cut) + gather()
