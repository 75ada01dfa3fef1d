"""The one exception type for mistakes a user can make in config or data."""


class ConfigError(ValueError):
    """A bad config value or bad input data; the message names the value and what is allowed."""
