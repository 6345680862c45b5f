"""maploc-netvlad: NetVLAD (Arandjelović et al., CVPR 2016), MobileNetVLAD distillation (Sarlin et al., CoRL 2018)
and hierarchical localization (Sarlin et al., CVPR 2019) as maploc methods ``netvlad``, ``mobilenetvlad``, ``hloc``.

Importing this package is cheap; the methods live in :mod:`.method` and :mod:`.hloc`.
"""

__version__ = "0.1.0"
