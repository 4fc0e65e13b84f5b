"""One error hierarchy. Every message is written for the person at the terminal: what went wrong, what to do."""
from __future__ import annotations


class ProvenanceError(Exception):
    """Base of every error provenance raises on purpose.

    `hint` says what the user can do about it; `diagnostics()` joins both for display.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(ProvenanceError):
    """The command cannot run as asked (missing ledger, unknown key, bad option)."""

    exit_code = 2


class ImageError(ProvenanceError):
    """One input could not be used as an image. A batch reports it and goes on."""


class KeystoreError(ProvenanceError):
    """A key could not be created, found or unlocked."""

    exit_code = 2


class LedgerError(ProvenanceError):
    """The ledger file cannot be opened or written."""


class TamperedLedgerError(LedgerError):
    """The ledger's content does not match its own hash chain, checkpoints or signatures."""

    def __init__(self, message: str, seq: int | None = None, hint: str | None = None):
        super().__init__(message, hint)
        self.seq = seq


class SelftestError(ProvenanceError):
    """A fingerprint algorithm no longer reproduces its golden vectors."""


class FetchError(ProvenanceError):
    """One URL could not be fetched (refused, unreachable, too large, not what was asked for). A batch goes on.

    The message is always one line, "URL: reason"; `url` and `reason` hold the two parts.
    """

    def __init__(self, url: str, reason: str, hint: str | None = None):
        super().__init__(f"{url}: {reason}", hint)
        self.url = url
        self.reason = reason


class FeedError(ProvenanceError):
    """A source (feed, page, sitemap, list) was fetched or read but cannot be parsed. A batch goes on.

    The message is "SOURCE: reason"; `source` and `reason` hold the two parts.
    """

    def __init__(self, source: str, reason: str, hint: str | None = None):
        super().__init__(f"{source}: {reason}", hint)
        self.source = source
        self.reason = reason
