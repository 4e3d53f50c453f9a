"""Imports every model family so each registers its variants. Add a family here in one line."""
from downpour.models import autoencoder, cat  # noqa: F401
