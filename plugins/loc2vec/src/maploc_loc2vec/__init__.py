"""maploc-loc2vec: Loc2Vec triplet embeddings of OpenStreetMap tiles, with map-tile localization.

Reference: the Loc2Vec blog post (Sentiance, "Loc2Vec: Learning location embeddings with triplet-loss
networks", 2018) and its public PyTorch re-implementation (a ResNet trained with an online triplet loss on
12-channel OSM tiles). Here the tiles are cut directly from maploc's OSM raster
(:mod:`maploc_osm`) instead of a tile server, and training runs on maploc's engine (mixed precision,
mid-epoch checkpoints, exact resume).

Modules:

* :mod:`~maploc_loc2vec.channels`: channel sets (OSM classes -> tile channels), colour rendering.
* :mod:`~maploc_loc2vec.blocks`: the spatial block split (train / val / test) and location sampling.
* :mod:`~maploc_loc2vec.data`: the ``osm-tiles`` and ``osm-tiles-synthetic`` datasets.
* :mod:`~maploc_loc2vec.mining`: online triplet mining (batch-hard, semi-hard) and the triplet loss.
* :mod:`~maploc_loc2vec.model`: the timm backbone + embedding head.
* :mod:`~maploc_loc2vec.method`: the ``loc2vec`` method.
* :mod:`~maploc_loc2vec.index`: reference indexes at H headings, the raw-tile and PCA baselines.
* :mod:`~maploc_loc2vec.report`: the report sections (split, index sizes, training figures; no recall).
* :mod:`~maploc_loc2vec.plots`: PCA / t-SNE, nearest-neighbour grid, interpolation strip, split map.

Importing this package imports neither torch nor the OSM layer.
"""

__version__ = "0.1.0"
