"""The one exception family of data_scripts: every message names the file and the fix."""

from __future__ import annotations


class DataScriptError(Exception):
    """A problem a learner can fix; the CLI prints the message and exits with status 1."""


class DownloadError(DataScriptError):
    """A download failed after its retries (offline, server down, wrong URL)."""


class ChecksumError(DataScriptError):
    """A file's content differs from the checksum pinned for it."""


class LayoutError(DataScriptError):
    """A dataset folder or archive does not have the expected folders and images."""


class UnsafeArchiveError(DataScriptError):
    """An archive member would be written outside the target folder, or is a link."""
