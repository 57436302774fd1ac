"""360-degree (equirectangular) photos and video: cut into pinhole views, registered as a rig.

:mod:`.equirect` (pixel/ray maths, view layouts), :mod:`.views` (the views and masks on disk),
:mod:`.rig` (COLMAP rig SfM), :mod:`.source` (detection and the ingest + SfM stage).
"""
