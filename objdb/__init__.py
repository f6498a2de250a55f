"""objdb package."""
