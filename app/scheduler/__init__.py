"""The removal queue and the runner that drains it within the 24-hour promise."""
