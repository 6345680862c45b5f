"""maploc-template: a copyable plugin skeleton with two methods: ``template`` (a tiny PoseNet-style absolute
pose regressor that trains) and ``template-features`` (ORB keypoints + PnP, a method that does not learn)."""
