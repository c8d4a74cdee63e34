"""Coverage-guided fuzz targets (atheris/libFuzzer), each run as its own process."""
