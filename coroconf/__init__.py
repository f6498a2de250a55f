"""coroconf package."""
