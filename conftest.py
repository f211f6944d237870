# The module stubs of the 0.1 import paths only forward names with a warning:
# nothing to collect there (tests/test_architecture.py tests them).
from skclusterfit.runtime._moved import MOVED_MODULES

collect_ignore = [f"{name.replace('.', '/')}.py" for name in MOVED_MODULES]
