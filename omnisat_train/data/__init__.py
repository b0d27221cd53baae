"""Datasets the trainer reads: TreeSatAI-TS, PASTIS-HD, and the packed cache."""
