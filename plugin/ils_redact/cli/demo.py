"""The demo: placeholder until the fixture lands."""
