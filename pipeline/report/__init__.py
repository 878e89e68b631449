"""`python -m pipeline.report`: compare a sweep's runs, speed next to quality."""
