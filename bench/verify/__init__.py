"""Boxed-answer reward verifier: one judge for training rewards and evaluation scores.

Public API: `extract_boxed`, `format_ok`, `answers_match`, `grade`, `grade_many`, `Grade`.
`python -m bench.verify --help` for the command line."""

from .extract import extract_boxed, format_ok, normalize_tag_spacing
from .grade import MODES, Grade, answers_match, clear_cache, grade, grade_many

__all__ = [
    "MODES",
    "Grade",
    "answers_match",
    "clear_cache",
    "extract_boxed",
    "format_ok",
    "grade",
    "grade_many",
    "normalize_tag_spacing",
]
