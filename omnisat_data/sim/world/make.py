"""`omnisat-data world make`: render a world's scenes to COGs, its catalog to STAC, its sources to disk.

Layout of a world folder:
    world.json                      config, counts, timings
    truth.json                      per-scene geolocation errors and acquisition facts (exact truth)
    stac/collections/<id>.json
    stac/items.ndjson               every item; asset hrefs relative to the world folder ("data/...")
    data/<collection>/<item>/<asset>.tif
    s3/eodata/Sentinel-2/...jp2     --catalog-style cdse: the Sentinel-2 assets as Copernicus Data Space keeps
                                    them (JPEG 2000, lossless), served by `stac serve` on a local S3 endpoint
    sources/treesatai/...           TreeSatAI archive tree (datasets spec §1)
    sources/PASTIS-R/...            PASTIS-R tree (datasets spec §3)
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil

from omnisat_data.io.atomic import write_json
from omnisat_data.io.raster import write_cog
from omnisat_data.io.workers import executor

from . import stac
from .config import WorldConfig
from .field import Field
from .legend import S2_BANDS, S2_RESOLUTION
from .render import (
    AERIAL_BANDS,
    NAIP_BANDS,
    S1_NODATA,
    S2_NODATA,
    SCL_CLOUD_HIGH,
    SCL_CLOUD_MEDIUM,
    SPOT_BANDS,
    aerial_values,
    content_coords,
    naip_values,
    on_grid,
    s1_values,
    s2_mask_values,
    s2_values,
    spot_values,
)
from .scenes import (
    AerialScene,
    S1Scene,
    S2Scene,
    SpotScene,
    plan_aerial,
    plan_naip,
    plan_pastis,
    plan_s1,
    plan_s2,
)
from .sources import name_tiles, write_pastis, write_treesatai

SMALL_BLOCK = 128  # internal tile size of the (reduced-extent) Sentinel COGs
VHR_BLOCK = 512


@dataclasses.dataclass(frozen=True)
class Plan:
    cfg: WorldConfig
    s2: list[S2Scene]
    s1: list[S1Scene]
    aerial: list[AerialScene]
    tiles: list  # TreeSatTile
    patches: list  # PastisPatch
    spot: SpotScene | None
    naip: list[AerialScene] = dataclasses.field(default_factory=list)  # NAIP-like 0.6 m RGBN sheets


def plan_world(cfg: WorldConfig) -> Plan:
    cfg.validate()
    aerial, tiles = plan_aerial(cfg)
    patches, spot = plan_pastis(cfg)
    return Plan(cfg, plan_s2(cfg), plan_s1(cfg), aerial, tiles, patches, spot, plan_naip(cfg))


# -- jobs (run in worker processes; pure apart from writing their own files) ---------------------------

def write_jp2(source: Path, target: Path) -> None:
    """A lossless JPEG 2000 copy of a raster (reversible 5/3 wavelet, as ESA's L2A products), 256 px
    code-blocks tiles, no sidecar file (a reader over S3 sees only the .jp2, as on eodata)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp.jp2")
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(source) as src:
        rasterio.shutil.copy(src, tmp, driver="JP2OpenJPEG", QUALITY="100", REVERSIBLE="YES", BLOCKXSIZE="256",
                             BLOCKYSIZE="256", RESOLUTIONS="1", YCBCR420="NO")
    os.replace(tmp, target)


def render_s2_group(cfg: WorldConfig, scenes: list[S2Scene], root: str, style: str = "planetary-computer",
                    ) -> dict[str, float]:
    """Render scenes that share a grid and geolocation error; return eo:cloud_cover per item."""
    field = Field(cfg)
    first = scenes[0]
    grids = {res: first.band_grid(res) for res in (10, 20, 60)}
    coords = {res: g.pixel_centres() for res, g in grids.items()}
    bases = {res: field.basis(*content_coords(first, *coords[res]), res) for res in grids}
    cover = {}
    for scene in scenes:
        folder = Path(root) / "data" / stac.S2_COLLECTION / scene.item_id
        for res in (10, 20, 60):
            bands = [b for b in S2_BANDS if S2_RESOLUTION[b] == res]
            values = s2_values(field, scene, bands, *coords[res], basis=bases[res])
            for band, array in zip(bands, values):
                write_cog(folder / f"{band}.tif", array, grids[res], S2_NODATA, SMALL_BLOCK)
        masks = s2_mask_values(field, scene, *coords[20], basis=bases[20])
        for name, array in masks.items():
            # SCL 0 means no data; a probability of 0 is a value (ESA's MSK_*PRB have no nodata).
            write_cog(folder / f"{name}.tif", array, grids[20], 0 if name == "SCL" else None, SMALL_BLOCK,
                      resampling="NEAREST" if name == "SCL" else "AVERAGE")
        if style == "cdse":
            for band in stac.CDSE_ASSETS:
                write_jp2(folder / f"{band}.tif", Path(root) / "s3" / stac.CDSE_BUCKET / stac.cdse_key(scene, band))
        valid = masks["SCL"] > 0
        cloudy = np.isin(masks["SCL"], (SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH)) & valid
        cover[scene.item_id] = 100.0 * cloudy.sum() / max(valid.sum(), 1)
    return cover


def render_s1_batch(cfg: WorldConfig, scenes: list[S1Scene], root: str) -> dict[str, float]:
    field = Field(cfg)
    for scene in scenes:
        values = s1_values(field, scene, *scene.grid.pixel_centres())
        folder = Path(root) / "data" / stac.S1_COLLECTION / scene.item_id
        for pol, array in zip(("vv", "vh"), values):
            write_cog(folder / f"{pol}.tif", array, scene.grid, S1_NODATA, SMALL_BLOCK)
    return {}


def render_vhr(cfg: WorldConfig, scene, collection: str, kind: str, root: str) -> dict[str, float]:
    field = Field(cfg)
    fn: Callable = {"aerial": aerial_values, "spot": spot_values, "naip": naip_values}[kind]
    data = on_grid(lambda x, y: fn(field, scene, x, y), scene.grid)
    write_cog(Path(root) / "data" / collection / scene.item_id / "image.tif", data, scene.grid, None, VHR_BLOCK,
              compress="DEFLATE", band_names={"aerial": AERIAL_BANDS, "spot": SPOT_BANDS, "naip": NAIP_BANDS}[kind])
    return {}


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _s2_groups(scenes: list[S2Scene], size: int = 12) -> list[list[S2Scene]]:
    groups: dict = {}
    for s in scenes:
        groups.setdefault((s.grid, s.shift), []).append(s)
    return [chunk for g in groups.values() for chunk in _chunks(g, size)]


# -- orchestration ------------------------------------------------------------------------------------

STYLES = ("planetary-computer", "earth-search", "cdse")  # whose keys, hrefs and properties the items use


def make_world(root: Path, cfg: WorldConfig, workers: int | None = None, style: str = "planetary-computer",
               progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Generate the whole world under `root` (created; must be empty or absent). Returns the summary."""
    if style not in STYLES:
        raise ValueError(f"--catalog-style must be {' or '.join(STYLES)}, not {style!r}")
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"world folder {root} is not empty")
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    plan = plan_world(cfg)
    field = Field(cfg)
    jobs: list[tuple] = []
    if plan.spot is not None:  # the longest job goes first
        jobs.append((render_vhr, cfg, plan.spot, stac.SPOT_COLLECTION, "spot", str(root)))
    jobs += [(render_vhr, cfg, s, stac.AERIAL_COLLECTION, "aerial", str(root)) for s in plan.aerial]
    jobs += [(render_vhr, cfg, s, stac.NAIP_COLLECTION, "naip", str(root)) for s in plan.naip]
    jobs += [(render_s2_group, cfg, g, str(root), style) for g in _s2_groups(plan.s2)]
    jobs += [(render_s1_batch, cfg, b, str(root)) for b in _chunks(plan.s1, 8)]
    cloud_cover: dict[str, float] = {}
    with executor(workers or os.cpu_count() or 1) as pool:  # the builds' pools (spawn)
        futures = [pool.submit(*job) for job in jobs]
        for done, fut in enumerate(as_completed(futures), start=1):
            cloud_cover.update(fut.result())
            if progress:
                progress("scenes", done, len(futures))
    t_render = time.perf_counter() - t0

    # Catalog.
    items = [stac.s2_item(s, cloud_cover[s.item_id], cfg.aoi_top, style) for s in plan.s2]
    items += [stac.s1_item(s, style) for s in plan.s1]
    aerial_items = [stac.vhr_item(s, stac.AERIAL_COLLECTION, AERIAL_BANDS, "aerial-survey") for s in plan.aerial]
    spot_items = [stac.vhr_item(plan.spot, stac.SPOT_COLLECTION, SPOT_BANDS, "SPOT 6")] if plan.spot else []
    naip_items = [stac.vhr_item(s, stac.NAIP_COLLECTION, NAIP_BANDS, "aerial-survey") for s in plan.naip]
    items += aerial_items + spot_items + naip_items
    collections = [
        stac.collection(
            stac.S2_COLLECTION,
            "Sentinel-2 Level-2A (synthetic world)",
            [i for i in items if i.collection_id == stac.S2_COLLECTION],
        ),
        stac.collection(
            stac.S1_COLLECTION,
            "Sentinel-1 radiometrically terrain corrected (synthetic world)",
            [i for i in items if i.collection_id == stac.S1_COLLECTION],
        ),
        stac.collection(
            stac.AERIAL_COLLECTION, "0.2 m colour-infrared aerial orthophotos (synthetic world)", aerial_items
        ),
    ]
    if naip_items:
        collections.append(stac.collection(stac.NAIP_COLLECTION, "0.6 m R, G, B, NIR NAIP-like imagery "
                                           "(synthetic world)", naip_items))
    if spot_items:
        collections.append(
            stac.collection(stac.SPOT_COLLECTION, "1 m SPOT-like RGB imagery (synthetic world)", spot_items)
        )
    for coll in collections:
        write_json(root / "stac" / "collections" / f"{coll.id}.json", coll.to_dict(include_self_link=False))
    lines = [json.dumps(i.to_dict(include_self_link=False, transform_hrefs=False)) for i in items]
    (root / "stac").mkdir(exist_ok=True)
    (root / "stac" / "items.ndjson").write_text("\n".join(lines) + "\n")

    # Source benchmarks.
    tiles, labels = name_tiles(field, plan.tiles)
    sheets = {}
    for s in plan.aerial:
        with rasterio.open(root / "data" / stac.AERIAL_COLLECTION / s.item_id / "image.tif") as ds:
            sheets[s.item_id] = (ds.read(), s.grid)
    write_treesatai(root / "sources" / "treesatai", field, tiles, labels, sheets, plan.s2, plan.s1)
    if plan.patches:
        write_pastis(root / "sources" / "PASTIS-R", field, cfg, plan.patches, plan.s2, plan.s1)
    if progress:
        progress("sources", 1, 1)

    truth = {
        "s2": {
            s.item_id: {
                "shift": list(s.shift),
                "datetime": s.datetime.isoformat(),
                "mgrs": s.mgrs,
                "orbit": s.orbit,
                "baseline": s.baseline,
                "product": s.product,
                "swath_edge": s.swath_edge,
                "cloud_cover": cloud_cover[s.item_id],
            }
            for s in plan.s2
        },
        "s1": {
            s.item_id: {
                "shift": list(s.shift),
                "datetime": s.start.isoformat(),
                "orbit": s.orbit,
                "direction": s.direction,
                "slice": s.slice_number,
                "grid": s.grid.to_dict(),
            }
            for s in plan.s1
        },
        "aerial": {
            s.item_id: {"shift": list(s.shift), "grid": s.grid.to_dict(), "year": s.datetime.year} for s in plan.aerial
        },
        "spot": {plan.spot.item_id: {"shift": list(plan.spot.shift), "grid": plan.spot.grid.to_dict()}}
        if plan.spot
        else {},
        "treesatai_tiles": {t.name: {"sheet": t.sheet, "year": t.year, "grid": t.grid.to_dict()} for t in tiles},
        "pastis_patches": {
            str(p.patch_id): {"fold": p.fold, "tile": p.tile, "grid": p.grid.to_dict()} for p in plan.patches
        },
    }
    write_json(root / "truth.json", truth)
    summary = {
        "config": _config_dict(cfg),
        "catalog_style": style,
        "counts": {"sentinel-2 scenes": len(plan.s2), "sentinel-1 scenes": len(plan.s1),
                   "aerial sheets": len(plan.aerial), "naip sheets": len(plan.naip), "spot scenes": len(spot_items),
                   "treesatai tiles": len(tiles), "pastis patches": len(plan.patches), "items": len(items),
                   "cog files": sum(len(i.assets) for i in items)},
        "seconds": {"render": round(t_render, 2), "total": round(time.perf_counter() - t0, 2)},
    }
    write_json(root / "world.json", summary)
    return summary


def _config_dict(cfg: WorldConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


ASIDE = ".demo-world.partial"  # where a world is made before it is renamed into place
ASIDE_MARK = ".made-by-omnisat-demo"  # inside ASIDE: proof that an interrupted one is ours to remove


def make_world_aside(folder: Path, world: Path, make: Callable[[Path], object]) -> None:
    """`make(target)` a world in `folder/ASIDE/world`, then rename it to `world`: a folder of the user's is
    never removed, only our own interrupted attempt (marked by ASIDE_MARK)."""
    import shutil

    if world.exists():
        raise FileExistsError(f"{world} exists but is not a demo world (no world.json): move it away, or give "
                              "the demo another folder")
    partial = folder / ASIDE
    if partial.exists():
        if not (partial / ASIDE_MARK).is_file():
            raise FileExistsError(f"{partial} exists and was not made by the demo: move it away")
        shutil.rmtree(partial)  # our own interrupted attempt
    partial.mkdir(parents=True)
    (partial / ASIDE_MARK).write_text("an interrupted omnisat-data demo world; the next demo run removes it\n")
    make(partial / "world")
    os.replace(partial / "world", world)
    shutil.rmtree(partial)

