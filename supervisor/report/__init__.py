"""Report: the click commands and the views they print."""
