"""Hyper-parameter sweeps with Optuna: the spec, the runs, the report (``mathverify sweep``)."""
