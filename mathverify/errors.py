"""The error for impossible settings (one line, raised before any weight is loaded)."""


class SettingsError(ValueError):
    """An impossible setting, reported before any weight is loaded."""
