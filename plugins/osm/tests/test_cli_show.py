"""``maploc data show`` (from maploc-osm's hook module) through :func:`maploc.cli.main`: a file path in every OSM
format, a sample name, and bad input answered in one line with exit status 2."""

from __future__ import annotations

import bz2
import subprocess
import sys
from pathlib import Path

import osmium
import pytest

PNG = b"\x89PNG\r\n\x1a\n"


def _city_xml() -> str:
    """Two buildings and a street, about 60 m across, near Helsinki."""
    nodes = {
        1: (60.1700, 24.9400), 2: (60.1700, 24.9406), 3: (60.1703, 24.9406), 4: (60.1703, 24.9400),
        5: (60.1698, 24.9390), 6: (60.1698, 24.9415),
        7: (60.1694, 24.9402), 8: (60.1694, 24.9408), 9: (60.1696, 24.9408), 10: (60.1696, 24.9402),
    }  # fmt: skip
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="maploc-test">']
    lines += [f'  <node id="{i}" version="1" lat="{lat}" lon="{lon}"/>' for i, (lat, lon) in nodes.items()]
    ways = [
        (100, [1, 2, 3, 4, 1], {"building": "yes", "height": "21", "roof:shape": "flat", "building:colour": "#aabbcc"}),
        (101, [5, 6], {"highway": "residential"}),
        (102, [7, 8, 9, 10, 7], {"building": "yes", "building:levels": "5"}),
    ]
    for way_id, refs, tags in ways:
        body = "".join(f'<nd ref="{r}"/>' for r in refs) + "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags.items())
        lines.append(f'  <way id="{way_id}" version="1">{body}</way>')
    return "\n".join(lines + ["</osm>"]) + "\n"


@pytest.fixture(scope="module")
def city_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("show")
    xml = folder / "city.osm"
    xml.write_text(_city_xml(), encoding="utf-8")
    compressed = folder / "city.osm.bz2"
    compressed.write_bytes(bz2.compress(xml.read_bytes()))
    pbf = folder / "city.osm.pbf"
    with osmium.SimpleWriter(str(pbf)) as writer:
        for obj in osmium.FileProcessor(str(xml)):
            writer.add(obj)
    return {"xml": xml, "bz2": compressed, "pbf": pbf}


@pytest.mark.parametrize("kind", ["pbf", "xml", "bz2"])
def test_show_a_file_path(maploc_main, city_files, tmp_path, monkeypatch, kind) -> None:
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))  # the raster cache goes there
    out = tmp_path / "pictures" / f"{kind}.png"
    status, stdout, stderr = maploc_main("data", "show", str(city_files[kind]), "--out", str(out), "--resolution", "1")
    assert status == 0, stderr
    assert f"wrote {out}" in stdout and "OpenStreetMap contributors" in stdout
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 10_000
    assert list((tmp_path / "cache" / "osm-rasters").rglob("*.npz"))  # cached for the next call


def test_areas_keep_their_tags(city_files) -> None:
    from maploc_osm import parse_osm

    areas = {a.osm_id: a for a in parse_osm(city_files["pbf"]).areas}
    assert dict(areas[100].tags) == {"building": "yes", "height": "21", "roof:shape": "flat",
                                     "building:colour": "#aabbcc"}  # fmt: skip
    assert dict(areas[102].tags) == {"building": "yes", "building:levels": "5"}
    with pytest.raises(TypeError):
        areas[100].tags["height"] = "1"  # read-only


def test_bad_input_is_one_line(maploc_main, city_files, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    corrupt = tmp_path / "corrupt.osm.pbf"
    corrupt.write_bytes(city_files["pbf"].read_bytes()[:60])
    garbage = tmp_path / "garbage.osm"
    garbage.write_text("<osm><node id='1' lat='x'", encoding="utf-8")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = str(tmp_path / "m.png")
    cases = [
        ((str(tmp_path / "missing.osm.pbf"), "--out", out), "missing.osm.pbf: OSM file not found"),
        ((str(corrupt), "--out", out), "corrupt.osm.pbf: cannot read OSM data"),
        ((str(garbage), "--out", out), "garbage.osm: cannot read OSM data"),
        (("no-such-sample", "--out", out), "unknown sample 'no-such-sample'; known samples:"),
        ((str(city_files["pbf"]), "--out", str(blocker / "m.png")), "is a file, not a folder"),
        ((str(city_files["pbf"]), "--out", str(tmp_path)), "is a folder; give the path of a .png file"),
        ((str(city_files["pbf"]), "--out", out, "--resolution", "0"), "--resolution must be a positive number"),
    ]
    for args, needle in cases:
        status, _, stderr = maploc_main("data", "show", *args)
        assert status == 2, (args, stderr)
        assert needle in stderr and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert not Path(out).exists()


def test_data_help_lists_show(maploc_main) -> None:
    status, stdout, _ = maploc_main("data", "--help")
    assert status == 0 and "show" in stdout and ".osm.pbf" in stdout


def test_hook_module_is_cheap() -> None:
    code = (
        "import sys, maploc_osm.hooks\n"
        "print([m for m in ('torch', 'osmium', 'cv2', 'matplotlib', 'pyproj') if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", (proc.stdout, proc.stderr)


@pytest.mark.data
def test_show_the_helsinki_sample(maploc_main, tmp_path) -> None:
    out = tmp_path / "helsinki.png"
    status, stdout, stderr = maploc_main("data", "show", "helsinki-osm", "--out", str(out))
    assert status == 0, stderr
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 200_000
