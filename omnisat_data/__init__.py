"""Build, serve and check tri-modal Earth-observation datasets."""
