"""STAC Collections and Items for the world's scenes, with the conventions of real catalogs.

Planetary Computer conventions by default (asset keys B01..B12, SCL; `s2:*`, `sat:*`, `sar:*`,
projection fields per asset); Earth Search asset keys (`blue`, `red`, `nir`, `scl`, ...) with
`raster:bands` scale/offset and `earthsearch:boa_offset_applied` as an option. Asset hrefs are
written relative to the world folder ("data/..."); catalogs resolve them on load.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pystac
from pyproj import Transformer
from shapely.geometry import Polygon, mapping

from omnisat_data.geo.grid import Grid

from .legend import S2_BANDS, S2_RESOLUTION
from .render import S1_NODATA, S2_NODATA
from .scenes import AerialScene, S1Scene, S2Scene, SpotScene

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
JP2 = "image/jp2"
S2_COLLECTION, S1_COLLECTION = "sentinel-2-l2a", "sentinel-1-rtc"
AERIAL_COLLECTION, SPOT_COLLECTION, NAIP_COLLECTION = "aerial-cir-20cm", "spot-rgb-1m", "naip"

EARTH_SEARCH_KEYS = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
                     "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
                     "B11": "swir16", "B12": "swir22", "SCL": "scl",
                     "CLD": "cloud", "SNW": "snow"}  # the masks as sentinel-2-c1-l2a serves them
COMMON_NAMES = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge", "B06": "rededge",
                "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22"}
WAVELENGTH = {"B01": 0.443, "B02": 0.49, "B03": 0.56, "B04": 0.665, "B05": 0.705, "B06": 0.74, "B07": 0.783,
              "B08": 0.842, "B8A": 0.865, "B09": 0.945, "B11": 1.61, "B12": 2.19}
S2_MASK_ASSETS = {"SCL": "Scene classification map", "CLD": "Cloud probability (0-100)",
                  "SNW": "Snow probability (0-100)"}


def footprint_lonlat(grid: Grid, polygon: Polygon | None = None) -> Polygon:
    """The grid's (or a sub-polygon's) footprint in WGS84, densified so edges stay true."""
    poly = polygon if polygon is not None else grid.footprint
    poly = poly.segmentize(max(poly.length / 64, 1.0))
    xs, ys = np.asarray(poly.exterior.coords).T
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    return Polygon(zip(np.round(lon, 7), np.round(lat, 7)))


def _epsg(crs: str) -> int:
    return int(crs.split(":")[1])


def _proj_fields(grid: Grid) -> dict:
    t = grid.transform
    return {"proj:shape": list(grid.shape), "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f, 0.0, 0.0, 1.0]}


def _item(
    item_id: str, geometry: Polygon, when: dt.datetime, collection: str, properties: dict, crs: str,
    item_level_proj: bool = True,
) -> pystac.Item:
    props = {"proj:epsg": _epsg(crs), "proj:code": crs, **properties} if item_level_proj else dict(properties)
    item = pystac.Item(id=item_id, geometry=mapping(geometry), bbox=list(geometry.bounds), datetime=when,
                       properties=props, collection=collection)
    # STAC requires a "collection" link when the field is set; relative to stac/items.ndjson.
    item.add_link(pystac.Link("collection", f"./collections/{collection}.json", media_type="application/json"))
    item.stac_extensions = [
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
        "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
        "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    ]
    return item


def s2_valid_polygon(scene: S2Scene, aoi_top: float) -> Polygon:
    """Data footprint of a scene: its grid, cut by the swath edge when it has one."""
    fp = scene.grid.footprint
    if scene.swath_edge is None:
        return fp
    left, bottom, right, top = fp.bounds
    # valid where x > edge - 0.25 (y - aoi_top)
    x_top = scene.swath_edge - 0.25 * (top - aoi_top)
    x_bottom = scene.swath_edge - 0.25 * (bottom - aoi_top)
    if min(x_top, x_bottom) >= right:
        return Polygon()
    # the half-plane east of the edge, as a parallelogram reaching past the grid (valid whatever the slope)
    reach = right + 1 - min(x_top, x_bottom)
    return fp.intersection(
        Polygon([(x_top, top), (x_top + reach, top), (x_bottom + reach, bottom), (x_bottom, bottom)])
    )


def cdse_key(scene: S2Scene, band: str) -> str:
    """Where Copernicus Data Space keeps a band in its eodata bucket: inside the SAFE, by resolution
    (s3://eodata/Sentinel-2/MSI/L2A/YYYY/MM/DD/<product>.SAFE/GRANULE/<granule>/IMG_DATA/R10m/<tile>_<time>_B02_10m.jp2)."""
    res = S2_RESOLUTION.get(band, 20)
    when = scene.datetime
    granule = f"L2A_T{scene.mgrs}_A{scene.orbit:06d}_{when:%Y%m%dT%H%M%S}"
    return (f"Sentinel-2/MSI/L2A/{when:%Y/%m/%d}/{scene.product}.SAFE/GRANULE/{granule}/IMG_DATA/R{res}m/"
            f"T{scene.mgrs}_{when:%Y%m%dT%H%M%S}_{band}_{res}m.jp2")


CDSE_BUCKET = "eodata"
CDSE_ASSETS = S2_BANDS + ("SCL",)  # CDSE serves no snow/cloud probability assets: SCL only


def s2_item(scene: S2Scene, cloud_cover: float, aoi_top: float, style: str = "planetary-computer") -> pystac.Item:
    """One scene's item the way `style` serves it: Planetary Computer (band-name keys, s2:* properties, ids
    without the N token), Earth Search (common-name keys, its offset flag) or Copernicus Data Space (the
    ESA name as id, `B02_10m` keys, JPEG 2000 on s3://eodata, STAC 1.1 raster:offset / processing:version)."""
    earth_search, cdse = style == "earth-search", style == "cdse"
    props = {
        "platform": scene.platform, "constellation": "Sentinel 2", "instruments": ["msi"],
        "eo:cloud_cover": round(float(cloud_cover), 4), "s2:mgrs_tile": scene.mgrs,
        "s2:processing_baseline": scene.baseline, "s2:product_uri": scene.product + ".SAFE",
        "s2:product_type": "S2MSI2A", "sat:relative_orbit": scene.orbit, "sat:orbit_state": "descending",
    }
    if earth_search:
        props["earthsearch:boa_offset_applied"] = False
    if cdse:
        props = {"platform": scene.platform.lower(), "constellation": "sentinel-2", "instruments": ["msi"],
                 "eo:cloud_cover": round(float(cloud_cover), 4), "grid:code": f"MGRS-{scene.mgrs}",
                 "processing:version": scene.baseline, "product:type": "S2MSI2A", "sat:relative_orbit": scene.orbit,
                 "sat:orbit_state": "descending"}
    item_id = scene.item_id
    if earth_search:
        item_id = f"{scene.platform[-2:].replace('-', '')}_{scene.mgrs}_{scene.datetime:%Y%m%d}_0_L2A"
    if cdse:
        item_id = scene.product
    item = _item(item_id, footprint_lonlat(scene.grid, s2_valid_polygon(scene, aoi_top)), scene.datetime,
                 S2_COLLECTION, props, scene.grid.crs, item_level_proj=not cdse)
    offset = -0.1 if scene.offset_applied else 0.0
    for band in CDSE_ASSETS if cdse else S2_BANDS + tuple(S2_MASK_ASSETS):
        res = S2_RESOLUTION.get(band, 20)
        grid = scene.band_grid(res)
        key = EARTH_SEARCH_KEYS[band] if earth_search else f"{band}_{res}m" if cdse else band
        raster = {"data_type": "uint16" if band in S2_BANDS else "uint8", "spatial_resolution": res}
        if band in S2_BANDS or band == "SCL":  # a probability of 0 is a value, not nodata
            raster["nodata"] = S2_NODATA
        extra: dict = {"gsd": float(res), **({"proj:code": grid.crs} if cdse else {}), **_proj_fields(grid)}
        if cdse and band in S2_BANDS:  # STAC 1.1: the raster fields on the asset itself
            extra.update({"raster:scale": 0.0001, "raster:offset": offset})
        if band in S2_BANDS:
            extra["eo:bands"] = [
                {"name": band, "common_name": COMMON_NAMES[band], "center_wavelength": WAVELENGTH[band]}
            ]
            if earth_search:
                raster.update(scale=0.0001, offset=offset)
            roles, title = ["data", "reflectance"], f"Band {band} - {COMMON_NAMES[band]} - {res}m"
        else:
            roles, title = ["data"], S2_MASK_ASSETS[band]
        if not cdse:
            extra["raster:bands"] = [raster]
        href = (f"s3://{CDSE_BUCKET}/{cdse_key(scene, band)}" if cdse
                else f"../data/{S2_COLLECTION}/{scene.item_id}/{band}.tif")
        item.add_asset(key, pystac.Asset(href=href, media_type=JP2 if cdse else COG, roles=roles, title=title,
                                         extra_fields=extra))
    return item


def pc_rtc_id(product: str) -> str:
    """Planetary Computer's sentinel-1-rtc item id of an ESA product: the name less its 4-hex unique id,
    plus `_rtc` (S1A_IW_GRDH_1SDV_..._053498_067DF2_DCEC -> S1A_IW_GRDH_1SDV_..._053498_067DF2_rtc)."""
    return product.rsplit("_", 1)[0] + "_rtc"


def s1_item(scene: S1Scene, style: str = "planetary-computer") -> pystac.Item:
    """A terrain-corrected Sentinel-1 item as Planetary Computer's sentinel-1-rtc serves it: the `_rtc` id, the
    ESA name only in the asset path (`.../<ESA name>/vv.tif`). Earth Search style: the ESA name as id and in
    s1:product_identifier. (Copernicus Data Space serves no terrain-corrected Sentinel-1: its worlds keep
    Planetary Computer's.)"""
    props = {
        "platform": scene.platform, "constellation": "Sentinel-1", "instruments": ["c-sar"],
        "start_datetime": scene.start.isoformat() + "Z", "end_datetime": scene.stop.isoformat() + "Z",
        "sar:instrument_mode": "IW", "sar:frequency_band": "C", "sar:polarizations": ["VV", "VH"],
        "sar:product_type": "GRD", "sat:orbit_state": scene.direction, "sat:relative_orbit": scene.orbit,
        "sat:absolute_orbit": scene.absolute_orbit, "s1:resolution": "high", "s1:product_timeliness": "Fast-24h",
    }
    item_id = pc_rtc_id(scene.item_id)
    if style == "earth-search":
        item_id, props["s1:product_identifier"] = scene.item_id, scene.item_id
    item = _item(item_id, footprint_lonlat(scene.grid), scene.start, S1_COLLECTION, props, scene.grid.crs)
    for pol in ("vv", "vh"):
        extra = {"gsd": 10.0, **_proj_fields(scene.grid),
                 "raster:bands": [{"nodata": S1_NODATA, "data_type": "float32", "spatial_resolution": 10}]}
        item.add_asset(
            pol,
            pystac.Asset(
                href=f"../data/{S1_COLLECTION}/{scene.item_id}/{pol}.tif",
                media_type=COG,
                roles=["data"],
                title=f"{pol.upper()}: terrain-corrected gamma naught (linear)",
                extra_fields=extra,
            ),
        )
    return item


def vhr_item(scene: AerialScene | SpotScene, collection: str, bands: tuple[str, ...], platform: str) -> pystac.Item:
    res = scene.grid.res[0]
    props = {"platform": platform, "gsd": res}
    item = _item(scene.item_id, footprint_lonlat(scene.grid), scene.datetime, collection, props, scene.grid.crs)
    extra = {"gsd": res, **_proj_fields(scene.grid),
             "eo:bands": [{"name": b, "common_name": b} for b in bands],
             "raster:bands": [{"data_type": "uint8", "spatial_resolution": res} for _ in bands]}
    item.add_asset("image", pystac.Asset(href=f"../data/{collection}/{scene.item_id}/image.tif", media_type=COG,
                                         roles=["data"], title="image", extra_fields=extra))
    return item


def collection(collection_id: str, description: str, items: list[pystac.Item]) -> pystac.Collection:
    bounds = np.array([i.bbox for i in items])
    times = sorted(i.datetime for i in items)
    extent = pystac.Extent(
        pystac.SpatialExtent([[float(bounds[:, 0].min()), float(bounds[:, 1].min()),
                               float(bounds[:, 2].max()), float(bounds[:, 3].max())]]),
        pystac.TemporalExtent([[times[0], times[-1]]]),
    )
    coll = pystac.Collection(id=collection_id, description=description, extent=extent, license="CC-BY-4.0",
                             title=collection_id)
    coll.stac_extensions = ["https://stac-extensions.github.io/item-assets/v1.0.0/schema.json"]
    coll.extra_fields["item_assets"] = {k: {"type": a.media_type, "roles": a.roles, "title": a.title}
                                        for k, a in items[0].assets.items()}
    return coll
