"""totemd package."""
