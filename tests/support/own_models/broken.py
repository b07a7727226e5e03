"""A factory module that does not import (a typo in an import, as users make them)."""

from torch import nn
from torch.nn import Conv2dd  # noqa: F401

small = nn.Linear
