"""The stage: reads staged whole or not at all, found again by tile across a killed run's parts."""

from __future__ import annotations

import numpy as np

from omnisat_data.build.stage import Stage, load, tile_id
from omnisat_data.geo.grid import Grid


def test_a_read_staged_in_parts_is_found_by_tile(tmp_path):
    stage = Stage(tmp_path)
    grids = [Grid.from_origin("EPSG:32632", 400000.0 + 60 * k, 5400000.0, 10.0, (6, 6)) for k in range(6)]
    ids = np.array([tile_id(f"t{k}", g) for k, g in enumerate(grids)], np.uint64)
    values = np.arange(6 * 2 * 36, dtype=np.float32).reshape(6, 2, 6, 6)
    first = stage.put("read", ids[[0, 1, 2]], values[[0, 1, 2]])  # a killed run's read of tiles 0-2
    stage.put("read", ids[[2, 3]], values[[2, 3]])  # another run's, of tiles 2-3
    assert first.segments(0, 3)[0].rows.tolist() == [0, 1, 2]
    found = stage.find("read", ids[[3, 1, 2]])
    got = np.concatenate([load(s) for s in found.segments(0, 3)])
    np.testing.assert_array_equal(got, values[[3, 1, 2]])
    assert stage.find("read", ids[[1, 4]]) is None  # tile 4 was never staged: read it all again
    assert stage.find("other", ids[[1]]) is None
    moved = tile_id("t1", Grid.from_origin("EPSG:32632", 400010.0, 5400000.0, 10.0, (6, 6)))
    assert stage.find("read", np.array([moved], np.uint64)) is None  # same name, another grid: another tile


def test_a_part_without_its_mark_is_not_staged_and_a_dropped_one_is_gone(tmp_path):
    stage = Stage(tmp_path)
    ids = np.array([1, 2], np.uint64)
    staged = stage.put("read", ids, np.zeros((2, 1, 6, 6), np.float32))
    staged.parts[0].with_suffix(".json").unlink()  # killed between the values and the mark
    assert stage.find("read", ids) is None
    staged = stage.put("read", ids, np.zeros((2, 1, 6, 6), np.float32))
    stage.drop(staged.parts[0])
    assert stage.find("read", ids) is None and not list((tmp_path / ".staged-reads" / "read").iterdir())
    stage.clear()
    assert not (tmp_path / ".staged-reads").exists()
