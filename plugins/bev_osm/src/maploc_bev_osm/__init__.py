"""maploc-bev-osm: OrienterNet-style localization of a street-level image against an OpenStreetMap raster.

Reference: Sarlin et al., "OrienterNet: Visual Localization in 2D Public Maps with Neural Matching", CVPR 2023.
Method ``bev_osm`` (:mod:`.method`); encoders ``bev-osm-image`` and ``bev-osm-map`` (:mod:`.model`); matcher
``bev-osm-exhaustive`` (:mod:`.matching`); geometry (:mod:`.geometry`).
"""

__version__ = "0.1.0"
