"""benchmarks/photo_reading_cost.py on a tiny cleaned dataset: every reading timed at every size, and its option
check."""
import pandas as pd
import pytest

from benchmarks import photo_reading_cost


def test_every_reading_is_timed_at_every_size(tiny_cleaned, tmp_path):
    photo_reading_cost.main(["--cleaned-full", str(tiny_cleaned), "--cleaned-cached", str(tiny_cleaned),
                             str(tiny_cleaned), "--sizes", "32", "48", "--rounds", "1", "--out", str(tmp_path)])
    table = pd.read_csv(tmp_path / "photo_reading_cost.csv")
    assert sorted(zip(table.img_size, table.reading)) == sorted(
        (size, reading) for size in (32, 48) for reading in ("full", "reduced", "cached"))
    assert (table.photos == 41).all() and (table.read_ms > 0).all() and (table.augment_ms > 0).all()
    assert "python benchmarks/photo_reading_cost.py" in (tmp_path / "photo_reading_cost.md").read_text()


def test_one_cached_folder_is_needed_for_each_size(tiny_cleaned, tmp_path, capsys):
    with pytest.raises(SystemExit):
        photo_reading_cost.main(["--cleaned-full", str(tiny_cleaned), "--cleaned-cached", str(tiny_cleaned),
                                 "--sizes", "32", "48", "--out", str(tmp_path)])
    assert "one folder for each of the 2 --sizes" in capsys.readouterr().err
