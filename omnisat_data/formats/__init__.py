"""The on-disk layouts (TreeSatAI, TreeSatAI-TS, PASTIS-R / PASTIS-HD): names, paths, read and write."""
