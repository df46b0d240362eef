"""Differentiable operations. Each is a ``Function`` class with its lowercase wrapper below it,
grouped by family: arithmetic, elementwise, reduction, shape, layers, loss, recurrent, attention
(with layer_norm)."""

from ._util import sum_to  # noqa: F401
from .arithmetic import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from .reduction import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
