"""Explanations: where the model looked and how it organises the images.

- ``layers``: candidate target layers of a model and their map sizes.
- ``cams``: CAM methods (Grad-CAM and friends) and the faithfulness check.
- ``cam_views``: the CAMs of one image of a run, cached in the run directory.
- ``embeddings``: the 2-D map (UMAP), clusters and nearest neighbours.
"""
