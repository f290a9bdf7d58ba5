"""Evaluation: DAVIS J&F (semi-supervised protocol) and backend parity checks."""

from softmask.eval.davis import evaluate_davis, format_table, write_csv

__all__ = ["evaluate_davis", "format_table", "write_csv"]
