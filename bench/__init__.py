"""Evaluation side: the R1 prompt, boxed-answer reward verifiers, the VLMEvalKit adapter,
offline scoring and synthetic benchmark data. Imports neither `train` nor `reproduce`."""
