"""Settings package of the jobtory reference app."""
