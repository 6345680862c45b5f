"""Cut an OSM file into the part inside a latitude/longitude box, written as a new ``.osm.pbf`` (pyosmium).

Used to make two disjoint maps out of one city for cross-map evaluation (train on one, evaluate on the other)::

    python -m maploc_bev_osm.osm_split Helsinki.osm.pbf --bbox 60.1642,24.9352,60.1712,24.9534 --out south.osm.pbf

Rules: a node is kept when it lies in the box; a closed way (an area) only when every node does; an open way (a
street, a railway) keeps the nodes inside the box when at least two remain (it is clipped at the box, so no line
reaches into another box); a relation keeps its kept members and is dropped when none remains.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maploc.errors import DataError

__all__ = ["split_osm"]


def split_osm(source: str | Path, bbox: tuple[float, float, float, float], out: str | Path) -> dict[str, int]:
    """Writes the part of ``source`` inside ``bbox`` to ``out`` (see the module docstring).

    Args:
        source: an OSM file pyosmium reads (``.osm.pbf``, ``.osm``, ``.osm.bz2``).
        bbox: ``(min_lat, min_lon, max_lat, max_lon)`` degrees.
        out: the file written (format from its suffix, e.g. ``.osm.pbf``); replaced if it exists.

    Returns:
        counts of nodes, ways and relations written.

    Raises:
        DataError: the source is missing, the box is empty or inverted, or nothing lies inside it.
    """
    import osmium

    source, out = Path(source), Path(out)
    if not source.is_file():
        raise DataError(f"{source}: OSM file not found")
    lat0, lon0, lat1, lon1 = bbox
    if not (lat0 < lat1 and lon0 < lon1):
        raise DataError(f"bbox {bbox} must be (min_lat, min_lon, max_lat, max_lon) with min < max")

    def inside(lat: float, lon: float) -> bool:
        return lat0 <= lat <= lat1 and lon0 <= lon <= lon1

    kept_nodes: set[int] = set()
    for obj in osmium.FileProcessor(str(source), osmium.osm.NODE):
        if inside(obj.location.lat, obj.location.lon):
            kept_nodes.add(obj.id)
    ways: dict[int, list[int]] = {}
    for way in osmium.FileProcessor(str(source), osmium.osm.WAY):
        refs = [n.ref for n in way.nodes]
        closed = len(refs) > 2 and refs[0] == refs[-1]
        inner = [r for r in refs if r in kept_nodes]
        if closed and len(inner) == len(refs):
            ways[way.id] = refs
        elif not closed and len(inner) >= 2:
            ways[way.id] = inner
    if not kept_nodes or not ways:
        raise DataError(f"{source}: nothing of the map lies in bbox {bbox}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part{''.join(out.suffixes)}")
    tmp.unlink(missing_ok=True)
    counts = {"nodes": 0, "ways": 0, "relations": 0}
    with osmium.SimpleWriter(str(tmp)) as writer:
        for obj in osmium.FileProcessor(str(source)):
            if obj.is_node() and obj.id in kept_nodes:
                writer.add_node(obj)
                counts["nodes"] += 1
            elif obj.is_way() and obj.id in ways:
                writer.add_way(obj.replace(nodes=ways[obj.id]))
                counts["ways"] += 1
            elif obj.is_relation():
                members = [(m.type, m.ref, m.role) for m in obj.members
                           if (m.type == "w" and m.ref in ways) or (m.type == "n" and m.ref in kept_nodes)]  # fmt: skip
                if members:
                    writer.add_relation(obj.replace(members=members))
                    counts["relations"] += 1
    tmp.replace(out)
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m maploc_bev_osm.osm_split", description=__doc__.splitlines()[0])
    p.add_argument("source")
    p.add_argument("--bbox", required=True, help="min_lat,min_lon,max_lat,max_lon (degrees)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        bbox = tuple(float(v) for v in args.bbox.split(","))
        if len(bbox) != 4:
            raise ValueError
    except ValueError:
        print(f"error: --bbox needs four numbers, got {args.bbox!r}", file=sys.stderr)
        return 2
    try:
        counts = split_osm(args.source, bbox, args.out)  # type: ignore[arg-type]
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {counts['nodes']} nodes, {counts['ways']} ways, {counts['relations']} relations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
