"""GDAL settings for every read of a COG over HTTP (production reads; the test servers are read the same way)."""

from __future__ import annotations


def gdal_http_env(header_bytes: int = 16384, timeout_s: float = 30.0) -> dict[str, str]:
    """GDAL settings for reading COGs over HTTP Range, tuned so that bytes served ~ bytes needed.

    `header_bytes` is what GDAL fetches at open (the TIFF header and tile index; 16 KB suits full-size
    Sentinel COGs, recipes may lower it for small files). Ranges are rounded up to 1 KB, not GDAL's
    16 KB, and no VSI_CACHE layer (it reads in 32 KB pages): on small blocks both tripled the bytes
    served (benchmarks/build_treesatai.py). Read every /vsicurl/ URL of a process with these settings:
    GDAL's curl cache outlives `rasterio.Env`, and a later read with another chunk size hung in the
    tests (the test of small windows over /vsicurl/ after an in-process build). EMPTY_DIR also
    matters for correctness: without it GDAL lists the parent "directory" on open, and with the asset
    server in the reader's own process that listing can block (GIL) and hang. Every wait is bounded:
    `timeout_s` (recipe field of the same name) caps connecting and a request, and a transfer that
    stalls (under 1 byte/s) for half of it is dropped; failed requests are retried 5 times.

    s3:// hrefs (Copernicus Data Space's eodata) are read through /vsis3/ with GDAL's own settings from the
    environment: AWS_S3_ENDPOINT (eodata.dataspace.copernicus.eu), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_VIRTUAL_HOSTING=FALSE, AWS_HTTPS=YES (README "Catalogs"); nothing here holds or logs a key.
    """
    return {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        # COGs, and Copernicus Data Space's JPEG 2000 (the list holds for /vsis3/ too)
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.jp2",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MULTIRANGE": "YES",
        "GDAL_HTTP_MAX_RETRY": "5",
        "GDAL_HTTP_RETRY_DELAY": "0.5",
        "GDAL_INGESTED_BYTES_AT_OPEN": str(header_bytes),
        "CPL_VSIL_CURL_CHUNK_SIZE": "1024",
        "GDAL_HTTP_CONNECTTIMEOUT": str(max(1, round(min(timeout_s, 10)))),
        "GDAL_HTTP_TIMEOUT": str(max(1, round(timeout_s))),
        "GDAL_HTTP_LOW_SPEED_TIME": str(max(1, round(timeout_s / 2))),
        "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
    }
