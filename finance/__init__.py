"""Finance models. Importing this package registers every model id of its modules."""

from zoo.registry import import_submodules

import_submodules(__name__)
