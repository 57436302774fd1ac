"""Large captures trained in blocks: the split on the ground plane and the merge."""
