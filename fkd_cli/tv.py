"""torchvision, imported without torch._dynamo: every torchvision name fkd uses comes from here.

Two lines of torchvision load all of torch._dynamo, which takes longer to import than torch itself
(4.3 s of a 9.7 s start-up on a busy 2-core machine; see the README's speed section):
`torchvision.ops.roi_align` imports `is_compile_supported` from `torch._dynamo.utils`, and
`torchvision.tv_tensors` decorates a function with `torch.compiler.disable`. fkd never compiles
anything. So, for the duration of the import only, a stand-in module answers for
`torch._dynamo.utils` (its function, if ever called, hands over to the real one) and
`torch.compiler.disable` leaves the function as it is (it only matters under torch.compile). If a
torchvision release needs more than that, the import falls back to the ordinary one.
"""

from __future__ import annotations

import sys
import types

import torch

_NAME = "torch._dynamo.utils"


def _import_without_dynamo() -> None:
    if "torchvision" in sys.modules or _NAME in sys.modules:
        return  # already imported (or dynamo already loaded): nothing to save

    def is_compile_supported(device_type):
        if sys.modules.get(_NAME) is stand_in:
            del sys.modules[_NAME]
        from torch._dynamo.utils import is_compile_supported as real

        return real(device_type)

    def keep_as_is(fn=None, recursive=True, **kwargs):
        return fn if fn is not None else (lambda f: f)

    stand_in = types.ModuleType(_NAME)
    stand_in.is_compile_supported = is_compile_supported
    sys.modules[_NAME] = stand_in
    disable = torch.compiler.disable
    torch.compiler.disable = keep_as_is
    try:
        import torchvision  # noqa: F401
        import torchvision.ops  # noqa: F401
        import torchvision.transforms.v2  # noqa: F401
    except (ImportError, AttributeError):
        # a torchvision that wants more of dynamo than this: import everything the ordinary way
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    finally:
        torch.compiler.disable = disable
        if sys.modules.get(_NAME) is stand_in:
            del sys.modules[_NAME]


_import_without_dynamo()

from torchvision import tv_tensors  # noqa: E402
from torchvision.transforms import v2  # noqa: E402
from torchvision.transforms.v2 import functional as F  # noqa: E402

__all__ = ["F", "tv_tensors", "v2"]
