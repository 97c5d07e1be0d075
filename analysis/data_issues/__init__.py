"""Findings about the data rather than the model.

- ``label_issues``: suspected label errors (confident learning) and the noise matrix.
- ``duplicates``: exact and near copies, train/test leakage and its effect on accuracy.
- ``outliers``: images whose properties are far from the rest (dark, blurry, odd size, ...).
"""
