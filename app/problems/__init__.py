"""Problems and submissions, with a small JSON API."""
