"""Statistics over a run's arrays: every number shown with how sure it is.

- ``intervals``: Wilson, bootstrap and DeLong intervals; the ``Estimate`` result.
- ``metrics``: confusion, per-class metrics, calibration, headline summary (checked against sklearn).
- ``slices``: slice specs, per-slice error rates, one-sided tests with BH correction.
- ``discovery``: conjunctions of up to three conditions where the model is worse.
- ``compare`` / ``drift``: run against run (model A vs B; set A vs B).
- ``robustness``: accuracy under perturbations, per class and per slice.
"""
