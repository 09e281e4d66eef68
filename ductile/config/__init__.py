"""Loading Ductile's configuration directory (spec config.md §1–§5)."""

from ductile.config.discovery import ConfigSource, find_config
from ductile.config.durations import format_duration, parse_byte_size, parse_duration
from ductile.config.errors import ConfigError
from ductile.config.loader import load_config
from ductile.config.model import (
    ApiConfig,
    BreakerConfig,
    Config,
    Diagnostic,
    PluginEntry,
    RetryConfig,
    SecretsConfig,
    ServiceConfig,
    TokenEntry,
)

__all__ = [
    "ApiConfig",
    "BreakerConfig",
    "Config",
    "ConfigError",
    "ConfigSource",
    "Diagnostic",
    "PluginEntry",
    "RetryConfig",
    "SecretsConfig",
    "ServiceConfig",
    "TokenEntry",
    "find_config",
    "format_duration",
    "load_config",
    "parse_byte_size",
    "parse_duration",
]
