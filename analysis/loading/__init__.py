"""Loading and the pass: inputs -> one batched model pass.

- ``datasets``: ImageFolder trees and CSV/Parquet manifests -> an image table with labels.
- ``images``: decoding one file safely (size caps, odd formats) and its image properties.
- ``models``: checkpoints -> a model, its class count and its preprocessing.
- ``fingerprints``: perceptual hashes and appearance signatures of each image.
- ``inference``: the pass itself (logits, embeddings, properties, thumbnails, skipped files).
"""
