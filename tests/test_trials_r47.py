"""Round 47's new-user trials: a photographer's archive (what a bulk run checks before its work, what it says
it leaves out) and a game developer's palette images."""
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kmq import batch, fileio
from kmq.cli import main


@pytest.fixture
def two_photos(tmp_path):
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    return tmp_path


@pytest.mark.parametrize("made", [False, True], ids=["folder-to-make", "folder-there"])
def test_a_bulk_run_into_a_read_only_folder_fails_each_file_before_its_work(two_photos, monkeypatch, made):
    # Each file was fitted (a --psnr search: seconds each at 54 MP) and only then refused at its write. A
    # read-only mount is simulated: as root, access() says yes to anything else.
    locked = two_photos / "ro"
    locked.mkdir()
    out = locked / "sub" if not made else locked
    real_access = os.access

    class Flags:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(fileio.os, "access", lambda p, mode: str(p) != str(locked) and real_access(p, mode))
    monkeypatch.setattr(fileio.os, "statvfs", lambda p: Flags())

    def no_work(self, job):
        raise AssertionError(f"{job.source} was worked on")

    monkeypatch.setattr(batch.CompressTask, "_work", no_work)
    result = CliRunner().invoke(main, ["compress", str(two_photos / "a.png"), str(two_photos / "b.png"), "-k", "4",
                                       "-o", f"{out}/", "-j", "1", "-q"])
    assert result.exit_code == 1
    assert sorted(result.output.splitlines()) == [
        f"Error: {two_photos / n}.png: cannot write {out / n}.kmq: read-only file system" for n in "ab"]


def test_a_bulk_run_names_a_symlink_loop_as_one_and_a_dangling_link_as_missing(two_photos):
    # Both were "no such file or directory" in a bulk run; the same loop alone said "too many levels ...".
    (two_photos / "loop1.png").symlink_to("loop2.png")
    (two_photos / "loop2.png").symlink_to("loop1.png")
    (two_photos / "gone.png").symlink_to("nowhere.png")
    result = CliRunner().invoke(main, ["compress", str(two_photos / "loop1.png"), str(two_photos / "gone.png"),
                                       str(two_photos / "a.png"), "-k", "4", "-o", str(two_photos / "out") + "/",
                                       "-j", "1", "-q"])
    assert result.exit_code == 1
    assert sorted(result.output.splitlines()) == [
        f"Error: {two_photos / 'gone.png'}: no such file or directory",
        f"Error: {two_photos / 'loop1.png'}: too many levels of symbolic links"]
    assert (two_photos / "out" / "a.kmq").exists()


def test_a_phone_jpeg_with_a_preview_says_what_the_second_image_is(tmp_path):
    # Pillow opens a JPEG holding more images (MPO) with n_frames 2: "2 frames; using the first" read like an
    # animation cut short, where the first is the photo.
    import kmq
    from kmq import imageio

    photo = Image.fromarray(np.random.default_rng(4).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    photo.save(tmp_path / "p.jpg", format="MPO", save_all=True, append_images=[photo.resize((8, 6))])
    with pytest.warns(kmq.KmqWarning, match=r"p\.jpg: a JPEG of 2 images \(MPO: a camera's preview or depth map, "
                                            r"or a stereo pair\); using the first, the main image$"):
        assert imageio.load_image(tmp_path / "p.jpg").shape == (24, 32, 3)


def test_a_folder_run_says_which_files_it_left_out_by_type(two_photos):
    # A phone's .HEIC and a camera's raw files were left out of a folder's run without a word ("Files 2 of 2").
    for name in ("IMG_1.HEIC", "IMG_2.heic", "IMG_3.CR2", "notes", "a.kmq", ".hidden.heic"):
        (two_photos / name).write_bytes(b"x")
    result = CliRunner().invoke(main, ["compress", str(two_photos), "-k", "4", "-o", str(two_photos / "out"),
                                       "-j", "1", "--summary", "json"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == (
        f"Warning: left out 3 image files of types Pillow cannot read (.heic 2, .cr2 1), the first "
        f"{two_photos / 'IMG_1.HEIC'}")
    assert sorted(p.name for p in (two_photos / "out").iterdir()) == ["a.kmq", "b.kmq"]


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_an_image_made_on_a_given_palette_decompresses_in_that_palettes_order(tmp_path, suffix):
    # Round 47's game-developer trial: index i of the PNG-8 / GIF was not entry i of the palette file (entries by
    # luminance), which breaks an engine's fixed palette; the unused entry (green) is kept too.
    indices = np.tile(np.array([[0, 2, 3, 4]], np.uint8), (4, 4))
    sprite = Image.fromarray(indices, "P")
    sprite.putpalette([255, 255, 255, 0, 255, 0, 0, 0, 0, 255, 0, 0, 0, 0, 255])
    sprite.save(tmp_path / "s.png")
    (tmp_path / "set.hex").write_text("#ffffff\n#00ff00\n#000000\n#ff0000\n#0000ff\n")
    runner = CliRunner()
    assert runner.invoke(main, ["compress", str(tmp_path / "s.png"), "--palette", str(tmp_path / "set.hex"),
                                "-o", str(tmp_path / "s.kmq"), "-q"]).exit_code == 0
    assert runner.invoke(main, ["decompress", str(tmp_path / "s.kmq"), "-o", str(tmp_path / f"out{suffix}"),
                                "-q"]).exit_code == 0
    with Image.open(tmp_path / f"out{suffix}") as out:
        assert out.mode == "P"
        assert out.getpalette()[:15] == [255, 255, 255, 0, 255, 0, 0, 0, 0, 255, 0, 0, 0, 0, 255]
        np.testing.assert_array_equal(np.asarray(out), indices)


def test_a_fitted_palette_image_is_still_ordered_by_luminance(tmp_path):
    pixels = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 0, 255]]], np.uint8).repeat(3, axis=0)
    Image.fromarray(pixels).save(tmp_path / "f.png")
    runner = CliRunner()
    assert runner.invoke(main, ["compress", str(tmp_path / "f.png"), "-k", "4", "-q"]).exit_code == 0
    assert runner.invoke(main, ["decompress", str(tmp_path / "f.kmq"), "-q"]).exit_code == 0
    with Image.open(tmp_path / "f.kmq.png") as out:
        assert out.getpalette()[:12] == [0, 0, 0, 0, 0, 255, 255, 0, 0, 255, 255, 255]


def test_a_folder_that_cannot_be_searched_is_one_error_line_not_a_traceback(two_photos, monkeypatch):
    # (h56r1) As a user who may not search a folder: Path.is_dir and Path.exists raised PermissionError from
    # the plan (a traceback), and an output folder of that kind was "unexpected PermissionError". As root
    # nothing is denied, so stat is, for what lies inside "locked".
    import errno

    locked = two_photos / "locked"
    locked.mkdir()
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if str(path).startswith(str(locked) + os.sep):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    result = CliRunner().invoke(main, ["compress", str(locked / "a.png"), str(two_photos / "b.png"), "-k", "4",
                                       "-o", str(two_photos / "out") + "/", "-j", "1", "-q"])
    assert (result.exit_code, result.output) == (1, f"Error: {locked / 'a.png'}: permission denied\n")
    assert (two_photos / "out" / "b.kmq").exists()


def test_only_unreadable_images_in_a_folder_are_named_before_the_error(two_photos):
    # (h56r1) a folder of nothing but .heic files got only "no images found": the warning came after the plan.
    phone = two_photos / "phone"
    phone.mkdir()
    (phone / "IMG_1.HEIC").write_bytes(b"x")
    result = CliRunner().invoke(main, ["compress", str(phone), "-k", "4", "-o", str(two_photos / "out") + "/"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Warning: {phone / 'IMG_1.HEIC'}: left out, Pillow cannot read .heic images here",
        f"Error: {phone}: no images found (searched recursively; names starting with . are skipped)"]


@pytest.mark.parametrize("suffix", [".png", ".gif"])
@pytest.mark.parametrize("levels", [[255, 0], [255, 0, 128, 64], list(range(250, 10, -6))])
def test_a_grey_given_palette_keeps_its_order_too(tmp_path, suffix, levels):
    # (h56r1) grey: black and white went to a 1-bit PNG (label 0, white, stored as 1), 40 levels to 8-bit grey
    # with no palette, and GIF ordered the levels itself.
    import kmq

    labels = np.arange(len(levels) * 3, dtype=np.uint8).reshape(3, -1) % len(levels)
    grey = np.array(levels, np.uint8)[labels]
    (tmp_path / "grey.hex").write_text("".join(f"#{v:02x}{v:02x}{v:02x}\n" for v in levels))
    img = kmq.compress(grey, palette=str(tmp_path / "grey.hex"))
    kmq.export(img, tmp_path / f"out{suffix}")
    with Image.open(tmp_path / f"out{suffix}") as out:
        assert out.mode == "P"
        np.testing.assert_array_equal(np.asarray(out), labels)
        assert out.getpalette()[: 3 * len(levels)] == [v for v in levels for _ in range(3)]
