"""Recipes: the shipped ones load; every wrong field is refused with its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnisat_data.recipe import RecipeError, load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_shipped_recipes_load():
    pc = load_recipe(RECIPES / "treesatai-ts.toml")
    assert pc.s2.catalog == "https://planetarycomputer.microsoft.com/api/stac/v1"
    assert pc.s2.assets == ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    assert pc.s1.collection == "sentinel-1-rtc" and pc.s2.mask_source == "scl"
    demo = load_recipe(RECIPES / "demo.toml")
    assert demo.s2.catalog == str((RECIPES.parent / "demo" / "world" / "stac" / "items.ndjson").resolve())
    assert demo.s2.masks == ("SNW", "CLD")
    assert demo.time_window(2015) == "2017-01-01T00:00:00Z/2017-12-31T23:59:59Z"
    assert demo.time_window(2020) == "2020-01-01T00:00:00Z/2020-12-31T23:59:59Z"
    assert demo.with_catalog("http://127.0.0.1:9").s1.catalog == "http://127.0.0.1:9"


BASE = """format = "treesatai-ts"
[s2]
catalog = "items.ndjson"
collection = "sentinel-2-l2a"
assets = ["B02", "B03"]
resolution = 10
[s1]
catalog = "items.ndjson"
collection = "sentinel-1-rtc"
assets = ["vv", "vh"]
resolution = 10
"""


@pytest.mark.parametrize(
    "change, message",
    [
        (("resolution = 10\n[s1]", "resolution = -1\n[s1]"), r"\[s2\]\.resolution: expected a positive number"),
        (('assets = ["vv", "vh"]', 'assets = ["vv", "vv"]'), r"\[s1\]\.assets: repeated"),
        (
            ('collection = "sentinel-2-l2a"', 'collection = "sentinel-2-l2a"\nresampling = "lanczos"'),
            r"\[s2\]\.resampling: 'lanczos' is not one of",
        ),
        (
            ('collection = "sentinel-1-rtc"', 'collection = "sentinel-1-rtc"\nbands = 3'),
            r"\[s1\]\.bands: only \[vhr\] takes bands",
        ),
        (
            ('collection = "sentinel-1-rtc"', 'collection = "sentinel-1-rtc"\nbandz = 3'),
            r"\[s1\]\.bandz: unknown field",
        ),
        (('format = "treesatai-ts"', 'format = "flair"'), r"format: 'flair' is not one of"),
        (('collection = "sentinel-2-l2a"\n', ""), r"\[s2\]\.collection: missing"),
        (
            ('collection = "sentinel-2-l2a"', 'collection = "sentinel-2-l2a"\nmasks = ["CLD"]'),
            r"\[s2\]\.masks: expected the snow",
        ),
        (('format = "treesatai-ts"', 'format = "treesatai-ts"\nfirst_year = "2017"'), r"first_year: expected a year"),
        (
            ('collection = "sentinel-1-rtc"', 'collection = "sentinel-1-rtc"\nheader_bytes = 512'),
            r"\[s1\]\.header_bytes: expected a whole number of bytes >= 1024",
        ),
    ],
)
def test_wrong_fields_are_named(tmp_path, change, message):
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace(*change, 1))
    with pytest.raises(RecipeError, match=message) as error:
        load_recipe(path)
    assert str(path) in str(error.value)


def test_unreadable_recipes(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe"):
        load_recipe(tmp_path / "missing.toml")
    (tmp_path / "broken.toml").write_text("format = ")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(tmp_path / "broken.toml")


def test_recipe_and_config_files_that_are_not_files_or_not_text_are_one_line(tmp_path):
    from omnisat_data.recipe import RecipeError, load_recipe
    from omnisat_train.train import TrainError, load_config

    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes("# r\xe9glage\n".encode("latin-1"))
    for path, needle in ((tmp_path, "a folder"), (latin1, "not UTF-8")):
        with pytest.raises(RecipeError, match=needle):
            load_recipe(path)
        with pytest.raises(TrainError, match=needle):
            load_config("pretrain", path)
    bad = tmp_path / "bad.toml"
    for text, needle in (('[train]\nepochs = "ten"\n', "epochs = 'ten': expected int"),
                         ("[train]\nmodalities = 's2'\n", "modalities"), ("train = 3\n", "not a table"),
                         ("[train]\nnormalize = 1\n", "expected bool")):
        bad.write_text(text)
        with pytest.raises(TrainError, match=needle):
            load_config("pretrain", bad, data="d", out="o")


@pytest.mark.parametrize("filter_, needle", [
    ('{ op = "<<", args = [{ property = "eo:cloud_cover" }, 3] }', "unsupported CQL2 operator '<<'"),
    ('{ op = "<=", args = [{ property = "eo:cloud_cover" }] }', "'<=' takes 2 arguments, got 1"),
    ('{ op = "and", args = [{ op = "like" }] }', "'like' takes 2 arguments, got 0"),
])
def test_a_bad_cql2_filter_is_refused_when_the_recipe_is_read(tmp_path, filter_, needle):
    root = Path(__file__).resolve().parent.parent
    text = (root / "recipes" / "demo.toml").read_text().replace("[s2]\n", f"[s2]\nfilter = {filter_}\n", 1)
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=needle.replace("(", r"\(")) as error:
        load_recipe(path)
    assert "[s2].filter" in str(error.value) or "s2" in str(error.value)
