"""Vision models. Importing this package registers every vision model id."""

from vision import eca_mobilenet, eca_resnet, halonet, vmamba  # noqa: F401  (registration side effects)
