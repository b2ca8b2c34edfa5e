"""Adapters that read what ADW agents write. They know nothing of aiohttp or of the broadcaster."""

from .adw_files import AdwFiles
from .adw_read import AdwRecord

__all__ = ["AdwFiles", "AdwRecord"]
