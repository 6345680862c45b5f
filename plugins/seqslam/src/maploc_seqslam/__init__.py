"""maploc-seqslam: SeqSLAM (Milford & Wyeth, ICRA 2012) and DeepSeqSLAM (Chancán & Milford, 2020)
sequence-based place recognition, evaluated with precision-recall per condition."""

__version__ = "0.1.0"
