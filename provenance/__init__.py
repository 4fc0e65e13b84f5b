"""provenance: register artworks, find their reposted copies, prove who made them first."""
from .errors import ProvenanceError
from .fingerprints import FingerprintSet, fingerprint
from .ledger import Ledger, Work
from .matching import Match, find_matches
from .registration import register, reveal
from .scanning import ScanResult, scan

__version__ = "0.1.0"
__all__ = ["Ledger", "Work", "FingerprintSet", "fingerprint", "Match", "find_matches", "register", "reveal", "scan",
           "ScanResult", "ProvenanceError", "__version__"]
