"""``.. shown-only:: reason``: a code block that the documentation tests do not run.

``tests/test_docs.py`` executes every Python code block of the guide; a block
that cannot run on a small CPU machine without network (it needs a GPU,
downloaded weights, your image folder, hours of compute) is preceded by this
directive, which tells the test to skip it and tells the reader why::

    .. shown-only:: needs a ResNet-50 weights file and a GPU.

    .. code-block:: python

       ...
"""

from docutils import nodes
from docutils.parsers.rst import Directive


class ShownOnly(Directive):
    required_arguments = 1
    final_argument_whitespace = True
    has_content = False

    def run(self):
        reason = self.arguments[0].strip()
        paragraph = nodes.paragraph(classes=["shown-only"])
        paragraph += nodes.emphasis(text=f"Not run by the documentation tests: {reason}")
        return [paragraph]


def setup(app):
    app.add_directive("shown-only", ShownOnly)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
