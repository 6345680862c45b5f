"""maploc-template: a copyable plugin skeleton (a tiny PoseNet-style absolute pose regressor)."""
