""".pth files written without torch are the bytes torch.save writes, and torch.load reads them as saved."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from omnisat_data.formats.treesatai_ts import pth_tensor, write_pth
from omnisat_data.io.pth import pth_bytes


def _torch_save(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    torch.save(torch.from_numpy(np.ascontiguousarray(array)), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("shape", [(5, 3, 6, 6), (0, 3, 6, 6), (146, 3, 6, 6), (2000, 3, 6, 6), (7,), (2, 5),
                                   (3, 4, 5)])
def test_the_bytes_are_torch_saves(shape):
    # 146 dates: the real sample's length; 2000 x 108 values: a pickle int of 4 bytes; 1-3 dimensions: short tuples
    array = np.random.default_rng(len(shape)).normal(size=shape).astype(np.float32)
    assert pth_bytes(array) == _torch_save(array)


def test_torch_loads_what_the_build_writes(tmp_path):
    data = np.random.default_rng(0).gamma(2.0, 0.05, (9, 2, 6, 6)).astype(np.float32)
    data[3, 1, 2:4, :] = np.nan  # filled with the frame's mean, as OmniSat's preprocessing
    path = tmp_path / "tile.pth"
    write_pth(path, data)
    want = torch.from_numpy(pth_tensor(data))
    for kwargs in ({"weights_only": True}, {"weights_only": False}, {"weights_only": True, "mmap": True}):
        loaded = torch.load(path, map_location="cpu", **kwargs)
        assert loaded.dtype == torch.float32 and torch.equal(loaded, want), kwargs
    assert path.read_bytes() == _torch_save(pth_tensor(data))


def test_the_build_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    code = ("import sys, numpy as np; from omnisat_data.formats.treesatai_ts import write_pth; "
            f"write_pth(__import__('pathlib').Path({str(tmp_path / 'x.pth')!r}), np.ones((2, 2, 6, 6), np.float32)); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
