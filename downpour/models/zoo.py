"""Imports every model family so each registers its variants. Add a family here in one line."""
from downpour.models import autoencoder, cat  # noqa: F401
from downpour.models import rbm  # noqa: F401
from downpour.models import cnn  # noqa: F401
from downpour.models import rnn  # noqa: F401
from downpour.models import multires  # noqa: F401
from downpour.models import teacher  # noqa: F401
