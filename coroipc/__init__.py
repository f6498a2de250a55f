"""coroipc package."""
