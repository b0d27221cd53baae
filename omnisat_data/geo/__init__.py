"""Pure geometry: grids, tiles, resampling, mosaics. No file or network I/O."""
