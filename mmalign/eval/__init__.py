"""Evaluation: lab tasks with exact ground truth, runners and reports."""
