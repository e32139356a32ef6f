"""The query verbs, declared once: request and reply models, and the catalogue."""

from engine.verbs.catalogue import CATALOGUE, QUERY_PREFIX, VerbSpec, verb
from engine.verbs.validation import validate_request

__all__ = ["CATALOGUE", "QUERY_PREFIX", "VerbSpec", "validate_request", "verb"]
