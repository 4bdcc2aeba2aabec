"""Evaluation: metrics over the long tail (metrics), a labelled set's evaluation and its report files (reports),
and the figures (plots)."""
