"""The edges: atomic writes, raster files, safe paths, worker pools."""
