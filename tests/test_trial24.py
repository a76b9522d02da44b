"""Round 44's trial of a teacher and a script checking kmq's numbers (h53e): what it found, each test failing on
the code before it."""
import csv
import io

import numpy as np
from PIL import Image

from kmq.cli import main


def test_a_carriage_return_in_a_name_is_quoted_in_csv(runner, tmp_path, monkeypatch):
    """csv.writer(lineterminator="\\n") quotes only the terminator's characters: a bare "\\r" in a name went out
    unquoted, and csv.reader split the record there, so every later record paired with the wrong name."""
    monkeypatch.chdir(tmp_path)
    pixels = np.arange(45, dtype=np.uint8).reshape(3, 5, 3)
    for name in ("cr\r.png", "b.png"):
        Image.fromarray(pixels).save(name)
    result = runner.invoke(main, ["stats", "cr\r.png", "b.png", "-k", "2", "--format", "csv"])
    assert result.exit_code == 0, result.output
    out = result.stdout_bytes.decode()
    rows = list(csv.reader(io.StringIO(out, newline="")))
    assert [row[0] for row in rows] == ["file", "cr\r.png", "b.png"]
    assert rows[1][1:] == rows[2][1:]
    assert out.count("\n") == 3 and '"cr\r.png",5,3,3,2,' in out  # records end in "\n"


def test_a_newline_in_a_name_stays_quoted_and_records_still_end_in_a_newline(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save("a\r\nb.png")
    result = runner.invoke(main, ["stats", "a\r\nb.png", "-k", "1", "--format", "csv"])
    assert result.exit_code == 0, result.output
    out = result.stdout_bytes.decode()  # (click's result.stdout makes every "\r\n" a "\n")
    assert out.splitlines(keepends=True)[0].endswith(",webp_bytes\n")
    assert [row[0] for row in csv.reader(io.StringIO(out, newline=""))] == ["file", "a\r\nb.png"]
    assert out.endswith(",,\n") and "\r\n" not in out.replace('"a\r\nb.png"', "")
