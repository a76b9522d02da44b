"""Devices as inputs: /dev/zero and /dev/urandom were called empty (a device seeks to 0 at its "end"), /dev/null
by path was called not an image."""
import os
import subprocess
import sys

import pytest

DEVICES = [("/dev/zero", "not an image Pillow can read"), ("/dev/urandom", "not an image Pillow can read"),
           ("/dev/null", "empty (0 bytes): no image to read")]


def _kmq(args, stdin, tmp_path):
    return subprocess.run([sys.executable, "-m", "kmq", "compress", *args, "-k", "4", "-o", str(tmp_path / "d.kmq")],
                          stdin=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not all(os.path.exists(d) for d, _ in DEVICES), reason="no such devices here")
@pytest.mark.parametrize("device, said", DEVICES)
def test_a_device_on_stdin_or_by_path_is_called_what_it_is(tmp_path, device, said):
    with open(device, "rb") as f:
        by_stdin = _kmq(["-"], f, tmp_path)
    by_path = _kmq([device], subprocess.DEVNULL, tmp_path)
    assert (by_stdin.returncode, by_stdin.stderr) == (1, f"Error: <stdin>: {said}\n")
    assert (by_path.returncode, by_path.stderr) == (1, f"Error: {device}: {said}\n")
    assert not (tmp_path / "d.kmq").exists()


def test_a_symlink_loop_is_named_as_every_command_names_it(tmp_path):
    """compress said 'cannot read image: [Errno 40] Too many levels of symbolic links: ...'."""
    from click.testing import CliRunner

    from kmq.cli import main

    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    for args in (["compress", "-k", "4", "-o", str(tmp_path / "a.kmq")], ["stats"]):
        result = CliRunner().invoke(main, [args[0], str(tmp_path / "a.png"), *args[1:]])
        assert (result.exit_code, result.output) == (1, f"Error: {tmp_path / 'a.png'}: too many levels of "
                                                        f"symbolic links\n")
